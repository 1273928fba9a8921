"""`OnnxModel`: an onnxruntime session behind what predict's tasks and transformers' pipelines call on a model
(`runtimes.py`'s `onnx` and `onnx-int8`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.utils import ModelOutput


@dataclass
class OnnxOutput(ModelOutput):
    logits: torch.Tensor | None = None


class OnnxModel(nn.Module):
    """An onnxruntime session behind what predict's tasks and transformers' pipelines call on a model:
    `config`, `device`, `forward(input_ids, attention_mask, token_type_ids).logits`."""

    def __init__(self, session, config: PretrainedConfig):
        super().__init__()
        self.session, self.config = session, config
        self.input_names = [given.name for given in session.get_inputs()]

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def can_generate(self) -> bool:
        return False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **unused) -> OnnxOutput:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        defaults = {"attention_mask": torch.ones_like, "token_type_ids": torch.zeros_like}
        feed = {name: (given.get(name) if given.get(name) is not None else defaults[name](input_ids))
                for name in self.input_names}
        logits = self.session.run(["logits"], {name: value.cpu().numpy().astype(np.int64)
                                               for name, value in feed.items()})[0]
        return OnnxOutput(logits=torch.from_numpy(logits))
