"""Model stacking (`strategy=frozen` with `stack.models=[...]` and/or `stack.tfidf=true`): several frozen encoders,
each reading the text with its own tokenizer, their pooled features concatenated (with TF-IDF features as one more
member if asked) under one linear head.

Each encoder member's features are the frozen strategy's pooled features (`features.extract`, through the same
disk cache and key, `pooled_<mode>`), so a stacked run reuses what a frozen run of a member computed and the
other way round. The TF-IDF member is fitted on the training split only; its vocabulary and idf are saved as
JSON, never a pickle.

During a run the head reads its features by row: every encoded example gets a `stack_row` (its place in the
run's feature table), so the loop, validation and the task's test run unchanged on the task's batches. A saved
stacked model (`save`) holds every member (encoder and tokenizer), `tfidf.json` and the head; its config.json's
model type (`nlptransfer-stacked`) is one transformers does not know, so plain transformers refuses the folder
(with or without `trust_remote_code`) rather than loading something else; `load` (nlptransfer's `load_model`)
reads it and predicts with all members.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput

from .. import catalog, models, pooling
from ..errors import ModelError
from ..modeling_nlptransfer import classifier_output, pool
from ..outputs.files import write_bytes, write_json
from . import features
from .batches import EncodedSplit

logger = logging.getLogger("nlptransfer")

STACKED_MODEL_TYPE = "nlptransfer-stacked"
SPLITS = ("train", "validation", "test")
TFIDF_FILE = "tfidf.json"
HEAD_FILE = "head.safetensors"


@dataclass
class Member:
    """One frozen encoder of a stack: what the user named, where it loads from, and how its states are pooled."""

    name: str
    path: str
    tokenizer: PreTrainedTokenizerBase
    encoder: PreTrainedModel
    pooling: dict
    """{"mode": mean|max|cls, "normalize": bool} (`pooling.resolve`)."""

    @property
    def size(self) -> int:
        return self.encoder.config.hidden_size


class TfidfMember:
    """TF-IDF features of the text (scikit-learn's TfidfVectorizer): fitted on the training split only."""

    SETTINGS = {"ngram_range": (1, 2), "sublinear_tf": True}  # as the TF-IDF baseline reads texts

    def __init__(self, vocabulary: dict[str, int], idf: list[float]) -> None:
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(vocabulary=vocabulary, **self.SETTINGS)
        self.vectorizer.idf_ = np.asarray(idf, dtype=np.float64)

    @classmethod
    def fit(cls, texts: list[str], max_features: int) -> TfidfMember:
        from sklearn.feature_extraction.text import TfidfVectorizer

        fitted = TfidfVectorizer(max_features=max_features, **cls.SETTINGS).fit(texts)
        return cls({term: int(i) for term, i in fitted.vocabulary_.items()}, fitted.idf_.tolist())

    @property
    def size(self) -> int:
        return len(self.vectorizer.vocabulary)

    def features(self, texts: list[str]):
        """A sparse (CSR) matrix of one row per text."""
        return self.vectorizer.transform(texts).astype("float32").tocsr()

    def to_json(self) -> dict:
        return {"settings": {"ngram_range": list(self.SETTINGS["ngram_range"]),
                             "sublinear_tf": self.SETTINGS["sublinear_tf"]},
                "vocabulary": self.vectorizer.vocabulary, "idf": self.vectorizer.idf_.tolist()}

    @classmethod
    def from_json(cls, values: dict) -> TfidfMember:
        return cls(values["vocabulary"], values["idf"])


def joined(texts: list[str], pairs: list[str] | None) -> list[str]:
    return list(texts) if pairs is None else [f"{a} {b}" for a, b in zip(texts, pairs)]


class StackedForSequenceClassification(nn.Module):
    """A linear head on the concatenated features of frozen encoders (and TF-IDF): `forward(stack_row=...)` reads
    the run's feature table, `text_logits(texts)` computes the features of new texts with every member."""

    def __init__(self, members: list[Member], tfidf: TfidfMember | None, config: PretrainedConfig,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.__dict__["members"] = members  # frozen and never trained: kept out of the parameters and checkpoints
        self.tfidf = tfidf
        self.config = config
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(sum(m.size for m in members) + (tfidf.size if tfidf else 0), config.num_labels)
        self.table: tuple[torch.Tensor, object] | None = None
        """The run's features: (encoder features of every row, their TF-IDF rows or None)."""

    def save_pretrained(self, folder: str | Path) -> None:
        save(self, Path(folder))

    def classify(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        logits = self.score(self.dropout(features.to(self.score.weight.device)))
        return classifier_output(logits, labels, self.config.problem_type)

    def forward(self, stack_row: torch.Tensor, labels: torch.Tensor | None = None, **token_inputs
                ) -> SequenceClassifierOutput:
        """The logits of rows of the run's table (the task's own token inputs are not read: the members' features
        of those texts are in the table)."""
        encoded, sparse = self.table
        rows = stack_row.cpu()
        return self.classify(concatenate(encoded[rows], sparse[rows.numpy()] if sparse is not None else None),
                             labels)

    @torch.no_grad()
    def text_logits(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32,
                    max_length: int = 512) -> torch.Tensor:
        """The logits of new texts: each member tokenizes and encodes them itself."""
        parts = [member_text_features(member, texts, pairs, batch_size, max_length, self.score.weight.device)
                 for member in self.members]
        sparse = self.tfidf.features(joined(texts, pairs)) if self.tfidf else None
        self.eval()
        return self.classify(concatenate(torch.cat(parts, dim=1), sparse)).logits.float().cpu()


def concatenate(encoded: torch.Tensor, sparse) -> torch.Tensor:
    """Encoder features beside their TF-IDF rows (a scipy sparse matrix, densified for this batch only)."""
    if sparse is None:
        return encoded
    return torch.cat([encoded, torch.from_numpy(sparse.toarray()).to(encoded.dtype)], dim=1)


def finish_pooling(pooled: torch.Tensor, member: Member) -> torch.Tensor:
    return nn.functional.normalize(pooled, dim=-1) if member.pooling["normalize"] else pooled


def member_text_features(member: Member, texts: list[str], pairs: list[str] | None, batch_size: int,
                         max_length: int, device) -> torch.Tensor:
    """One member's pooled features of new texts, computed as `split_features` computes a split's."""
    encoder = member.encoder.to(device).eval()
    limit = models.max_length(member.tokenizer, max_length)
    parts = []
    for start in range(0, len(texts), batch_size):
        batch = member.tokenizer(texts[start:start + batch_size], pairs[start:start + batch_size] if pairs else None,
                                 truncation=True, max_length=limit, padding=True, return_tensors="pt").to(device)
        hidden = encoder(**batch).last_hidden_state
        parts.append(pool(hidden, batch.get("attention_mask"), member.pooling["mode"]).float().cpu())
    return finish_pooling(torch.cat(parts) if parts else torch.zeros(0, member.size), member)


def member_split_features(member: Member, encoded: EncodedSplit, task, cfg, accelerator: Accelerator
                          ) -> torch.Tensor:
    """One member's pooled features of one encoded split ([examples, hidden]), through the frozen feature cache
    (the same key as `strategy=frozen` with a head pooled the same way)."""
    mode = member.pooling["mode"]
    extract = features.cached_extraction(
        lambda encoder, batches, acc: features.extract(encoder, batches, acc, pooling=mode), f"pooled_{mode}",
        member.path, cfg.data.max_length, cfg.train.mixed_precision, member.tokenizer)
    loader = accelerator.prepare(task.eval_loader(encoded, member.tokenizer, cfg))
    rows = extract(member.encoder, loader, accelerator)
    if not len(rows):
        return torch.zeros(0, member.size)
    return finish_pooling(torch.stack([row["encoder_hidden"][0] for row in rows]), member)


def stacked_features(members: list[Member], encoded: list[dict], tfidf: TfidfMember | None, texts: list[str],
                     split: str, task, cfg, accelerator: Accelerator):
    """A split's stacked features: every member's (`encoded[i]`: member i's encoded splits) concatenated, and the
    TF-IDF rows of its `texts` (or None)."""
    blocks = [member_split_features(member, member_encoded[split], task, cfg, accelerator)
              for member, member_encoded in zip(members, encoded)]
    return torch.cat(blocks, dim=1), (tfidf.features(texts) if tfidf else None)


def resolve_member(name: str) -> str:
    """Where a member loads from: a run folder's model/, a folder, or the checkpoint a short name or hub id names."""
    folder = Path(name).expanduser()
    if (folder / "model" / "config.json").is_file() and not (folder / "config.json").is_file():
        return str(folder / "model")
    return catalog.resolve_model(name)


def check_member(name: str, trust_remote_code: bool = False) -> str:
    """A member's checkpoint, checked as far as can be without loading it; its path."""
    path = resolve_member(name)
    if models.is_local_path(name) and not Path(path).expanduser().exists():
        raise ModelError(f"stack.models: cannot load '{name}': the folder does not exist; check the path, or name "
                         "a hub id, a short name (minilm) or a run folder")
    try:
        models.check_local_checkpoint(name, path, trust_remote_code, weights=True)
    except ModelError as error:
        raise ModelError(f"stack.models: {error}") from None
    return path


def load_member(name: str, path: str, requested_pooling: str, trust_remote_code: bool = False) -> Member:
    """A member encoder (without any head it has) and its own tokenizer, frozen."""
    try:
        pooled_config = models.saved_pooled_config(path)  # a pooled nlptransfer model: its encoder's config
        encoder = AutoModel.from_pretrained(path, use_safetensors=True, trust_remote_code=trust_remote_code,
                                            **({"config": pooled_config} if pooled_config else {}))
    except (OSError, ValueError) as error:
        raise ModelError(f"stack.models: cannot load '{name}': {models.first_line(error)}; pass a folder saved "
                         "with save_pretrained, a run folder, a hub id or a short name (minilm)") from None
    tokenizer = models.load_tokenizer(name, trust_remote_code, path=path)
    models.freeze(encoder)
    return Member(name, path, tokenizer, encoder.eval(), pooling.resolve(requested_pooling, None, path))


def train(fitting, settings) -> tuple[StackedForSequenceClassification, object]:
    """Fit the head of a stack (model= first, then `settings.models`, then TF-IDF) on the members' cached features
    through the loop; the task's encoded splits get their `stack_row`, so validation and test read the table."""
    from .loop import OptimizerSettings, TrainData, fit

    cfg, task, data, accelerator = fitting.cfg, fitting.task, fitting.data, fitting.accelerator
    # model= loads afresh too: the run's copy may carry speed-ups that compute the first token alone
    sources = [(cfg.model, fitting.model_source or resolve_member(cfg.model))]
    sources += [(name, check_member(name, cfg.trust_remote_code)) for name in settings.models or ()]
    members = [load_member(name, path, settings.pooling, cfg.trust_remote_code) for name, path in sources]
    for member in members:
        member.encoder.to(accelerator.device)
    encoded = [fitting.encoded] + [task.encode(data, member.tokenizer, cfg) for member in members[1:]]
    texts = {split: joined(getattr(data, split).texts, getattr(data, split).text_pairs) for split in SPLITS}
    tfidf = TfidfMember.fit(texts["train"], settings.tfidf_features) if settings.tfidf else None
    tables = [stacked_features(members, encoded, tfidf, texts[split], split, task, cfg, accelerator)
              for split in SPLITS]
    model = StackedForSequenceClassification(members, tfidf, stacked_config(fitting.model.config),
                                             dropout=getattr(fitting.model.config, "hidden_dropout_prob", 0.1))
    model.table = (torch.cat([table[0] for table in tables]),
                   stack_sparse([table[1] for table in tables]) if tfidf else None)
    logger.info("stack: %s; %d features per text, head of %s parameters", describe(members, tfidf),
                model.score.in_features, f"{sum(p.numel() for p in model.score.parameters()):,}")
    number_rows(fitting.encoded)
    batches = task.train_loader(fitting.encoded["train"], fitting.tokenizer, cfg)
    train_data = TrainData(batches, fitting.validate_on(fitting.loader("validation")), fitting.loss_fn)
    fitted = fit(model, train_data, cfg.train, OptimizerSettings(fitting.lr), accelerator, fitting.callbacks)
    return accelerator.unwrap_model(model), fitted


def stack_sparse(parts: list):
    from scipy.sparse import vstack

    return vstack(parts).tocsr()


def number_rows(encoded: dict[str, EncodedSplit]) -> None:
    """Give every encoded example its row of the run's feature table (splits in SPLITS order), in place."""
    offset = 0
    for split in SPLITS:
        rows = encoded[split]
        encoded[split] = EncodedSplit([row | {"stack_row": offset + i} for i, row in enumerate(rows.features)],
                                      rows.documents, rows.over_limit)
        offset += len(rows)


def stacked_config(config: PretrainedConfig) -> PretrainedConfig:
    """The head's config: the labels (and problem type) of the first member's model config."""
    return PretrainedConfig(num_labels=config.num_labels, id2label=dict(config.id2label),
                            label2id=dict(config.label2id), problem_type=config.problem_type)


def describe(members: list[Member], tfidf: TfidfMember | None) -> str:
    parts = [f"{m.name} ({m.pooling['mode']}-pooled{', normalized' if m.pooling['normalize'] else ''}, {m.size})"
             for m in members]
    return " + ".join(parts + ([f"TF-IDF ({tfidf.size} terms)"] if tfidf else []))


def save(model: StackedForSequenceClassification, folder: Path) -> None:
    """Write a stacked model folder into `folder` (a staging folder): config.json, the head, every member under
    members/N/ (encoder and tokenizer, safetensors), tfidf.json."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    spec = []
    for i, member in enumerate(model.members):
        member.encoder.save_pretrained(folder / "members" / str(i))
        member.tokenizer.save_pretrained(folder / "members" / str(i))
        spec.append({"name": member.name, "path": f"members/{i}", "pooling": member.pooling, "size": member.size})
    if model.tfidf is not None:
        write_json(folder / TFIDF_FILE, model.tfidf.to_json())
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(folder / HEAD_FILE))
    config = model.config.to_dict() | {
        "model_type": STACKED_MODEL_TYPE, "architectures": [type(model).__name__],
        "stack": {"members": spec, "tfidf": TFIDF_FILE if model.tfidf is not None else None,
                  "dropout": model.dropout.p}}
    write_bytes(folder / "config.json", json.dumps(config, indent=2, sort_keys=True).encode())


def is_stacked(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") == STACKED_MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def load(folder: Path) -> StackedForSequenceClassification:
    """A saved stacked model with all its members; nothing of the folder's is run (safetensors and JSON only)."""
    from safetensors.torch import load_file

    try:
        values = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        spec = values["stack"]
        members = []
        for entry in spec["members"]:
            path = folder / entry["path"]
            models.require_safetensors(path, f"cannot load the stacked model in {folder}")
            encoder = AutoModel.from_pretrained(path, use_safetensors=True)
            members.append(Member(entry["name"], str(path), models.load_tokenizer(str(path)), encoder.eval(),
                                  entry["pooling"]))
        tfidf = (TfidfMember.from_json(json.loads((folder / spec["tfidf"]).read_text(encoding="utf-8")))
                 if spec.get("tfidf") else None)
        config = PretrainedConfig.from_dict({k: v for k, v in values.items() if k not in ("model_type", "stack")})
        model = StackedForSequenceClassification(members, tfidf, config, spec.get("dropout", 0.1))
        model.load_state_dict(load_file(str(folder / HEAD_FILE)))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        raise ModelError(f"cannot load the stacked model in {folder}: {models.first_line(error)}; save it again "
                         "with a stacked run (strategy=frozen stack.models=[...])") from None
    return model.eval()
