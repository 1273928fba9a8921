"""Feature extraction for `strategy=frozen`: run the frozen encoder once, then train only the head.

A frozen encoder gives the same outputs every epoch, so recomputing them is waste. The
encoder inside the model is swapped for `FeatureReplay`, which hands the model's own head
the cached features of the batch: the head's code (pooler, dropout, classifier, loss) runs
unchanged for every architecture, and `restore()` puts the real encoder back for saving.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .batches import EncodedSplit, LengthGroupedBatches, model_inputs, sorted_batches


class FeatureReplay(nn.Module):
    """Stands in for the encoder: returns the features set for the current batch."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: BaseModelOutputWithPooling | None = None

    def forward(self, *args, **kwargs) -> BaseModelOutputWithPooling:
        return self.outputs


class HeadOnFeatures(nn.Module):
    """The task model with its encoder replaced by cached features; only the head has parameters."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model
        self.__dict__["encoder"] = model.base_model  # kept out of this module's parameters
        self.replay = FeatureReplay()
        setattr(model, model.base_model_prefix, self.replay)

    def forward(self, encoder_hidden, encoder_pooled=None, labels=None):
        self.replay.outputs = BaseModelOutputWithPooling(last_hidden_state=encoder_hidden,
                                                         pooler_output=encoder_pooled)
        return self.model(labels=labels)

    def restore(self) -> PreTrainedModel:
        """The original model with its real encoder back in place."""
        setattr(self.model, self.model.base_model_prefix, self.encoder)
        return self.model


@torch.no_grad()
def extract(encoder: nn.Module, batches: DataLoader, accelerator: Accelerator) -> EncodedSplit:
    """Run the encoder once over a split; per example, the first token's hidden state and pooler output.

    Sequence classification heads read only the first token (`[CLS]`/`<s>`) or the pooler.
    """
    encoder.eval()
    rows: dict[int, dict] = {}
    for batch in tqdm(batches, desc="extracting features", leave=False,
                      disable=not accelerator.is_local_main_process):
        inputs = {k: v.to(accelerator.device) for k, v in model_inputs(batch).items() if k != "labels"}
        with accelerator.autocast():
            outputs = encoder(**inputs)
        pooled = getattr(outputs, "pooler_output", None)
        gathered = accelerator.gather_for_metrics({
            "encoder_hidden": outputs.last_hidden_state[:, :1].float(),
            "labels": batch["labels"].to(accelerator.device),
            "example_index": batch["example_index"].to(accelerator.device),
        } | ({"encoder_pooled": pooled.float()} if pooled is not None else {}))
        for i, index in enumerate(gathered["example_index"].tolist()):
            rows[index] = {key: value[i].cpu() for key, value in gathered.items()}
    return EncodedSplit([rows[i] for i in sorted(rows)])


def feature_loaders(
    train: EncodedSplit, validation: EncodedSplit, batch_size: int, eval_batch_size: int, seed: int
) -> tuple[DataLoader, DataLoader]:
    """Shuffled training batches and ordered validation batches of cached features."""
    same_length = [1] * len(train)
    train_batches = DataLoader(train, batch_sampler=LengthGroupedBatches(same_length, batch_size, seed))
    validation_batches = DataLoader(validation, batch_sampler=sorted_batches([1] * len(validation), eval_batch_size))
    return train_batches, validation_batches
