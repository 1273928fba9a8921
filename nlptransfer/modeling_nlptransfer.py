"""A classifier on pooled sentence embeddings (mean, max or first-token pooling), for any encoder.

This file is self-contained (torch and transformers only): nlptransfer saves a copy of it beside
a pooled model's weights, so that `transformers` loads the model with `trust_remote_code=True`
(`AutoModelForSequenceClassification`, `pipeline("text-classification", ...)`). nlptransfer's own
`predict` uses the installed copy and runs no code from the folder.

The saved config.json says `model_type: nlptransfer-pooled` (a type transformers does not know, its
`AutoConfig` mapped to `PooledConfig` here), so that transformers refuses the folder without
`trust_remote_code=True` and says to pass it, rather than loading the encoder under a new, random
classifier of its own. The encoder's own config is the same keys with `encoder_model_type` as the
model type (`encoder_config`), also saved as `encoder_config.json` for sentence-transformers.

The encoder keeps its own architecture and weight names (`bert.*`, `roberta.*`, ...), so the same
folder loads as a plain encoder too: `sentence_transformers.SentenceTransformer` and
`setfit.SetFitModel` read it with the pooling files saved beside it (and `encoder_config.json`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CONFIG_MAPPING, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

POOLING_MODES = ("mean", "max", "cls")
POOLED_MODEL_TYPE = "nlptransfer-pooled"
ENCODER_CONFIG_FILE = "encoder_config.json"
"""The encoder's own config (model_type `bert`, ...) beside a saved pooled model, for sentence-transformers."""


class PooledConfig(PretrainedConfig):
    """A pooled model's config as saved: every key of its encoder's config (BertConfig, ...), the labels and the
    pooling settings, with `encoder_model_type` naming the encoder's model type."""

    model_type = POOLED_MODEL_TYPE


def encoder_config(config: PretrainedConfig) -> PretrainedConfig:
    """The encoder's own config class (BertConfig, ...) with every setting of `config` (labels, pooling)."""
    if getattr(config, "model_type", None) != POOLED_MODEL_TYPE:
        return config
    return config_from_saved(config.to_dict())


def encoder_values(values: dict) -> dict:
    """A config.json's values as the encoder's own config (model_type `bert`, ...)."""
    if values.get("model_type") != POOLED_MODEL_TYPE:
        return dict(values)
    encoder_type = values["encoder_model_type"]
    return {key: value for key, value in values.items() if key != "encoder_model_type"} | {"model_type": encoder_type}


def config_from_saved(values: dict) -> PretrainedConfig:
    """The encoder's config from a saved pooled model's config.json values, by transformers' installed class."""
    values = {key: value for key, value in encoder_values(values).items() if key != "auto_map"}
    return CONFIG_MAPPING[values["model_type"]].from_dict(values)


def saved_config(values: dict) -> dict:
    """What config.json holds for a pooled model whose encoder config is `values`: the model type transformers
    does not know, so that its own classes refuse the folder, and this file's classes for `trust_remote_code`."""
    auto_map = {"AutoConfig": "modeling_nlptransfer.PooledConfig",
                "AutoModelForSequenceClassification": "modeling_nlptransfer.PooledForSequenceClassification"}
    encoder_type = encoder_values(values)["model_type"]
    return {**values, "model_type": POOLED_MODEL_TYPE, "encoder_model_type": encoder_type, "auto_map": auto_map}


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

    `config` is the encoder's own config with the pooling settings (as nlptransfer trains it) or the saved
    `PooledConfig` (as transformers loads it with `trust_remote_code=True`). The head is named `score`, not
    `classifier`, so that its weights never load into an architecture's own classifier.
    """

    config_class = PooledConfig
    supports_gradient_checkpointing = True

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        encoder = AutoModel.from_config(encoder_config(config))
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
        return classifier_output(logits, labels, self.config.problem_type)


def classifier_output(logits: torch.Tensor, labels: torch.Tensor | None, problem_type: str | None
                      ) -> SequenceClassifierOutput:
    """The logits with their loss: binary cross-entropy per label for multi-label, else cross-entropy."""
    loss = None
    if labels is not None:
        if problem_type == "multi_label_classification":
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        else:
            loss = nn.functional.cross_entropy(logits, labels)
    return SequenceClassifierOutput(loss=loss, logits=logits)
