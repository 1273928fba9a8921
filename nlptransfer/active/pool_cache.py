"""The pool's encoder outputs cached in the active folder, for strategies whose encoder never trains (`frozen`).

With a frozen encoder each round's model differs from the last only in its head, so the pool (30,000 texts: minutes
of encoder passes on a CPU) is run through the encoder once: the first trained round scores it in full and keeps, per
text, its mean-pooled embedding and what the head reads (the first token's hidden state and the pooler output, or a
pooled head's pooled states: `engine.features.head_inputs`, as `frozen` trains on them). Later rounds apply their
head to those features (`engine.features.HeadOnFeatures`). The cache is used only when its key matches: the model
name, a digest of the encoder's weights, the tokenizer, max_length, the head's pooling, and a digest of the pool
texts in order; and it is kept only when the head on the kept features gave the full pass's probabilities.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import torch

from ..engine.features import HeadOnFeatures, head_inputs, head_pooling
from ..outputs import files
from .scoring import Scorer

logger = logging.getLogger("nlptransfer")

CACHE = "pool_features.pt"
FORMAT = 1


def weights_digest(module: torch.nn.Module) -> str:
    """A digest of every weight of `module` (the encoder): a retrained encoder under the same name is another key."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(scorer: Scorer, model_name: str, texts: list[str], max_length: int) -> dict:
    """What the cached features depend on."""
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return {"format": FORMAT, "model": str(model_name), "encoder": weights_digest(scorer.model.base_model),
            "tokenizer": [type(scorer.tokenizer).__name__, len(scorer.tokenizer)], "max_length": max_length,
            "pooling": head_pooling(scorer.model), "texts": digest.hexdigest(), "count": len(texts)}


def read(path: Path, key: dict) -> dict | None:
    """The cached features under `key`; None when missing, unreadable or stale (another key)."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # missing, torn or not ours: recomputed, never trusted
        return None
    return stored if isinstance(stored, dict) and stored.get("key") == key else None


@torch.inference_mode()
def head_probabilities(scorer: Scorer, features: dict, batch_size: int) -> np.ndarray:
    """The head of `scorer`'s model applied to cached features (its encoder stands aside meanwhile)."""
    scorer.model.eval()
    head = HeadOnFeatures(scorer.model)
    try:
        rows = []
        hidden = features["embeddings"][:, None] if features["hidden"] is None else features["hidden"]
        pooled = features["pooled"]
        for start in range(0, len(hidden), batch_size):
            logits = head(hidden[start:start + batch_size],
                          None if pooled is None else pooled[start:start + batch_size]).logits
            rows.append(scorer.probabilities(logits))
    finally:
        head.restore()
    return np.concatenate(rows) if rows else np.zeros((0, len(scorer.label_names)))


def in_text_order(parts: list[torch.Tensor], rows: list[torch.Tensor]) -> torch.Tensor:
    """Batches' rows (scored in length order) put back in the texts' order."""
    stacked, positions = torch.cat(parts), torch.cat(rows)
    ordered = torch.empty_like(stacked)
    ordered[positions] = stacked
    return ordered


def score(scorer: Scorer, texts: list[str], batch_size: int, max_length: int, path: Path, model_name: str
          ) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, embeddings) of `texts` as `scorer.score` gives them: from the cache at `path` when it holds
    these texts' features under this encoder, else by a full pass that fills it."""
    key = cache_key(scorer, model_name, texts, max_length)
    stored = read(path, key)
    if stored is not None:
        logger.info("pool: the encoder's outputs come from %s (a frozen encoder): only the head runs", path.name)
        return head_probabilities(scorer, stored, batch_size), stored["embeddings"].numpy()
    kept: dict[str, list] = {"hidden": [], "pooled": [], "rows": []}
    pooling = head_pooling(scorer.model)

    def keep(outputs, attention_mask, rows) -> None:
        hidden, pooled = head_inputs(outputs, attention_mask, pooling)
        kept["rows"].append(torch.as_tensor(rows))
        if pooling != "mean":
            kept["hidden"].append(hidden.float().cpu())
        if pooled is not None:
            kept["pooled"].append(pooled.float().cpu())

    probabilities, embeddings = scorer.score(texts, batch_size, max_length, on_encoder=keep)
    features = {"key": key, "embeddings": torch.from_numpy(embeddings),  # a mean-pooled head reads the embeddings
                "hidden": None if pooling == "mean" else in_text_order(kept["hidden"], kept["rows"]),
                "pooled": in_text_order(kept["pooled"], kept["rows"]) if kept["pooled"] else None}
    if not np.allclose(head_probabilities(scorer, features, batch_size), probabilities, atol=1e-5):
        logger.warning("this model's head reads more than the first token, the pooler or its pooled states: the "
                       "pool is scored in full each round")
        return probabilities, embeddings
    buffer = io.BytesIO()
    torch.save(features, buffer)
    try:
        files.write_bytes(path, buffer.getvalue())
    except OSError as error:  # a cache only: the round goes on, the next one scores in full again
        logger.warning("could not keep the pool's encoder outputs in %s (%s): the next round scores the pool in full",
                       path, error.strerror or error)
    return probabilities, embeddings
