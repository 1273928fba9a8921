"""A classifier on pooled sentence embeddings (mean, max or first-token pooling), for any encoder.

This file is self-contained (torch and transformers only): nlptransfer saves a copy of it beside
a pooled model's weights, so that `transformers` loads the model with `trust_remote_code=True`
(`AutoModelForSequenceClassification`, `pipeline("text-classification", ...)`). nlptransfer's own
`predict` uses the installed copy and runs no code from the folder.

The encoder keeps its own architecture and weight names (`bert.*`, `roberta.*`, ...), so the same
folder loads as a plain encoder too: `AutoModel`, `sentence_transformers.SentenceTransformer` and
`setfit.SetFitModel` read it with the pooling files saved beside it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

POOLING_MODES = ("mean", "max", "cls")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """One vector per input from the encoder's last hidden states, as sentence-transformers pools them."""
    if mode == "cls" or hidden.shape[1] == 1:
        return hidden[:, 0]
    mask = (torch.ones(hidden.shape[:2], device=hidden.device) if attention_mask is None
            else attention_mask).unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class PooledForSequenceClassification(PreTrainedModel):
    """The encoder, pooling (`config.pooling`: mode and normalization), dropout and a linear head (`score`).

    The head is named `score`, not `classifier`: a copy loaded as the architecture's own classifier (without
    `trust_remote_code`) then gets a newly initialized classifier and transformers says so, rather than
    silently reading the first token through this head.
    """

    config_class = PretrainedConfig
    supports_gradient_checkpointing = True

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        encoder = AutoModel.from_config(config)
        self.base_model_prefix = encoder.base_model_prefix
        setattr(self, self.base_model_prefix, encoder)
        pooling = getattr(config, "pooling", None) or {}
        self.pooling_mode = pooling.get("mode", "mean")
        self.normalize = bool(pooling.get("normalize", False))
        dropout = getattr(config, "classifier_dropout", None)
        self.dropout = nn.Dropout(0.1 if dropout is None else dropout)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "score", None):
            module.weight.data.normal_(mean=0.0, std=getattr(self.config, "initializer_range", 0.02))
            module.bias.data.zero_()
        else:
            encoder = getattr(self, getattr(self, "base_model_prefix", ""), None)
            if isinstance(encoder, PreTrainedModel):
                encoder._init_weights(module)

    def embed(self, input_ids=None, attention_mask=None, **inputs) -> torch.Tensor:
        """The pooled (and, if configured, normalized) sentence embeddings."""
        outputs = self.base_model(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        pooled = pool(outputs.last_hidden_state, attention_mask, self.pooling_mode)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **inputs
                ) -> SequenceClassifierOutput:
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        inputs.pop("return_dict", None)
        logits = self.score(self.dropout(self.embed(input_ids, attention_mask, **inputs)))
        loss = None
        if labels is not None:
            if self.config.problem_type == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
