"""Exact speed-ups of the model's own computation, applied before training (`train.speedups`).

Profiling a CPU training step of the packaged MiniLM (batch 32, ~33 tokens) showed two costs
that are not the matrix products the model needs (see benchmarks/README.md, "Levers"):

- **The top layer's work on every token.** A sequence-classification head of the BERT family
  reads only the first token's final hidden state (`[CLS]`/`<s>`: the pooler, RoBERTa's and
  ELECTRA's heads). The top layer still needs keys and values of every token, but its query,
  attention output, feed-forward block and LayerNorms only for the first one: `first_token_top`
  computes exactly that, 10/12 of the top layer's matrix work. Outputs and gradients are those of
  the full layer (tested); only the first token's final state exists afterwards.
- **Dropout's random numbers.** torch's CPU dropout draws one Mersenne-Twister number per element
  through a slow `bernoulli_` path (about 5 ms for a 32x33x384 tensor, 20 calls per step).
  `FastDropout` draws 64 random bits per four elements and compares 16-bit slices with the
  threshold: the same Bernoulli(1 - p) keep mask (p rounded to 1/65536), seeded by torch's
  generator like any dropout. Attention-probability dropout happens inside SDPA, so the same
  mask goes into an attention function registered as `nlptransfer_sdpa`: SDPA itself whenever
  dropout is off (evaluation), the plain softmax(QK^T)V with fast dropout while training.
  On GPU tensors both leave torch's own (fused, Philox) dropout in place.

Neither changes the weights, so saved models are plain transformers models; `restore` undoes both.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.bert.modeling_bert import eager_attention_forward

logger = logging.getLogger(__name__)

ATTENTION = "nlptransfer_sdpa"

FIRST_TOKEN_HEADS = {
    "BertForSequenceClassification",
    "RobertaForSequenceClassification",
    "XLMRobertaForSequenceClassification",
    "CamembertForSequenceClassification",
    "ElectraForSequenceClassification",
}
"""Heads that read only the first token's final hidden state, on BERT-style layers."""


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """Bernoulli(1 - p) booleans of `shape` on CPU, from torch's default generator."""
    count = math.prod(shape)
    words = torch.randint(-2**63, 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64)
    threshold = round(p * 65536) - 32768  # int16 slices are uniform over [-32768, 32767]
    return (words.view(torch.int16)[:count] >= threshold).view(shape)


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout with `keep_mask`'s cheap random numbers."""
    return torch.where(keep_mask(x.shape, p), x * (1.0 / (1.0 - p)), 0.0)


class FastDropout(nn.Dropout):
    """`nn.Dropout` with `fast_dropout` on CPU tensors (same `p`, same training/eval switch)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        return fast_dropout(x, self.p)


def dropout_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      **kwargs) -> tuple[torch.Tensor, None]:
    """SDPA, except while dropping attention probabilities on CPU: then softmax(QK^T)V with `fast_dropout`."""
    if dropout == 0.0 or query.device.type != "cpu":
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scores = torch.matmul(query, key.transpose(-1, -2)) * (scaling or query.size(-1) ** -0.5)
    if attention_mask is not None:  # sdpa_mask: True where a query may attend
        scores = scores.masked_fill(~attention_mask, float("-inf")) if attention_mask.dtype == torch.bool \
            else scores + attention_mask
    probabilities = fast_dropout(scores.softmax(-1), dropout)
    return torch.matmul(probabilities, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, dropout_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def first_token_forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        *args, **kwargs) -> torch.Tensor:
    """A BERT-style layer computed for the first token only (keys and values from every token)."""
    attention = self.attention.self
    batch, length, _ = hidden_states.shape
    first = hidden_states[:, :1]

    def heads(states: torch.Tensor) -> torch.Tensor:
        return states.view(batch, states.shape[1], -1, attention.attention_head_size).transpose(1, 2)

    attend = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention_forward)
    context, _ = attend(
        attention, heads(attention.query(first)), heads(attention.key(hidden_states)),
        heads(attention.value(hidden_states)), None if attention_mask is None else attention_mask[:, :, :1],
        dropout=attention.dropout.p if attention.training else 0.0, scaling=attention.scaling,
    )
    return self.feed_forward_chunk(self.attention.output(context.reshape(batch, 1, -1), first))


_FIRST_TOKEN_CLASSES: dict[type, type] = {}


def first_token_class(layer_class: type) -> type:
    if layer_class not in _FIRST_TOKEN_CLASSES:
        _FIRST_TOKEN_CLASSES[layer_class] = type(f"FirstToken{layer_class.__name__}", (layer_class,),
                                                 {"forward": first_token_forward, "full_class": layer_class})
    return _FIRST_TOKEN_CLASSES[layer_class]


def transformers_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper, or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def top_layer(model: nn.Module) -> nn.Module | None:
    """The top encoder layer when the head reads only its first token and the layer is BERT-style."""
    inner = transformers_model(model)
    if type(inner).__name__ not in FIRST_TOKEN_HEADS or inner.config.is_decoder:
        return None
    layers = getattr(getattr(inner.base_model, "encoder", None), "layer", None)
    layer = layers[-1] if isinstance(layers, nn.ModuleList) and len(layers) else None
    bert_style = layer is not None and hasattr(layer, "feed_forward_chunk") and all(
        hasattr(getattr(layer.attention, "self", None), name)
        for name in ("query", "key", "value", "attention_head_size", "scaling", "dropout"))
    return layer if bert_style else None


def first_token_top(model: nn.Module) -> bool:
    """Compute the top layer for the first token only (see the module docstring); False where not exact."""
    layer = top_layer(model)
    if layer is None:
        return False
    if not hasattr(type(layer), "full_class"):
        layer.__class__ = first_token_class(type(layer))
    return True


def fast_dropout_modules(model: nn.Module) -> int:
    """Swap every plain `nn.Dropout` for `FastDropout`; returns how many."""
    swapped = 0
    for module in model.modules():
        if type(module) is nn.Dropout:
            module.__class__ = FastDropout
            swapped += 1
    return swapped


def fast_attention_dropout(model: nn.Module) -> bool:
    """Route SDPA attention through `dropout_attention` (same masks, fast dropout while training)."""
    inner = transformers_model(model)
    if inner.config._attn_implementation != "sdpa" or not getattr(inner, "_supports_sdpa", False):
        return False
    config = inner.config
    config._attn_implementation = ATTENTION
    return True


def speed_up(model: nn.Module) -> list[str]:
    """Apply every exact speed-up that fits the model; returns what was applied, for the log."""
    applied = []
    if first_token_top(model):
        applied.append("top layer for the first token only")
    if swapped := fast_dropout_modules(model):
        applied.append(f"fast CPU dropout ({swapped} modules)")
    if fast_attention_dropout(model):
        applied.append("fast CPU attention dropout")
    logger.info("speed-ups: %s", ", ".join(applied) or "none apply to this model")
    return applied


def restore(model: nn.Module) -> nn.Module:
    """Undo `speed_up`: full top layer, torch dropout, SDPA."""
    for module in model.modules():
        if hasattr(type(module), "full_class"):
            module.__class__ = type(module).full_class
        elif type(module) is FastDropout:
            module.__class__ = nn.Dropout
    config = transformers_model(model).config
    if config._attn_implementation == ATTENTION:
        config._attn_implementation = "sdpa"
    return model
