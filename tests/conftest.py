"""Shared fixtures: a tiny random BERT checkpoint on disk and the labeled-text assets.

Everything runs offline: the hub is switched off before transformers is imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# The frozen strategy's feature cache: a fresh folder per test session, never the user's ~/.cache.
# train.mixed_precision=auto picks bf16 on CPUs with AMX or AVX-512 BF16: the suite computes in fp32 on every CPU
# (its exact-equality checks compare runs with fp32 predictions); tests of the choice itself clear this.
os.environ["NLPTRANSFER_NO_BF16"] = "1"
os.environ.setdefault("NLPTRANSFER_CACHE", __import__("tempfile").mkdtemp(prefix="nlptransfer-cache-"))

import string  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ASSETS = Path(__file__).parent / "assets"

WORDS = """
the a an and or but not no yes is are was were be been am i you he she it we they me him her us them
my your his its our their this that these those there here what which who when where why how all any
some many much more most few very so too just only also than then now still again ever never always
of to in on at by for with from up down out over under about into after before as if because while
do does did done have has had will would can could should may might must get got go went make made
good bad great best worst love hate like happy sad angry glad awful terrible excellent amazing boring
nice fine okay poor wonderful horrible fantastic lovely ugly enjoy enjoyed loved hated liked fun
movie film book food day time people thing year week today tomorrow night game team music song show
news market price bank money stock company government election minister party vote law court police
match goal win won lose lost player season sport phone computer software internet data tech new old
big small long short high low first last next other same own right left well really think know want
see look feel say said tell told come came take took give gave find found work play played watch read
""".split()
VOCAB = list(dict.fromkeys(
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + WORDS
    + list(string.ascii_lowercase + string.digits + string.punctuation)
    + [f"##{c}" for c in string.ascii_lowercase + string.digits]
))

TINY_SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A randomly initialized 2-layer BERT with a WordPiece tokenizer, saved like a hub checkpoint."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    # transformers 5: BertTokenizer is the fast (tokenizers) one and takes `vocab`, not `vocab_file`
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(VOCAB)}, do_lower_case=True)
    assert len(tokenizer) == len(VOCAB)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), max_position_embeddings=128, **TINY_SIZES)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def reviews_csv() -> Path:
    """60 reviews, 20 per class (pos/neg/neu), with class-specific vocabulary."""
    return ASSETS / "reviews.csv"


def _tiny_run(model_dir: str, train_file: Path, output_dir: Path, strategy: str) -> Path:
    from nlptransfer.config import DataConfig, RunConfig, TrainConfig
    from nlptransfer.pipeline import run

    run(RunConfig(model=model_dir, strategy=strategy, output_dir=str(output_dir),
                  data=DataConfig(train_file=str(train_file), max_length=32),
                  train=TrainConfig(epochs=1, batch_size=8, max_steps=2)))
    return output_dir


def _tiny_ner_run(model_dir: str, output_dir: Path, strategy: str) -> Path:
    """A 2-step `recipe=ner` run of the tiny checkpoint on tests/assets/ner_tiny.conll."""
    from nlptransfer import load_recipe
    from nlptransfer.pipeline import run

    run(load_recipe("ner").Config(model=model_dir, output_dir=str(output_dir), strategy=strategy,
                                  data={"name": None, "train_file": str(ASSETS / "ner_tiny.conll"), "max_length": 32},
                                  train={"epochs": 1, "batch_size": 8, "max_steps": 2}))
    return output_dir


@pytest.fixture(scope="session")
def full_run(tiny_model_dir, reviews_csv, tmp_path_factory) -> Path:
    """A finished classification run (strategy full, 2 steps) of the tiny checkpoint on the reviews."""
    return _tiny_run(tiny_model_dir, reviews_csv, tmp_path_factory.mktemp("full") / "run", "full")


@pytest.fixture(scope="session")
def lora_run(tiny_model_dir, reviews_csv, tmp_path_factory) -> Path:
    """A finished classification run with strategy lora: model/ (merged) and adapter/."""
    return _tiny_run(tiny_model_dir, reviews_csv, tmp_path_factory.mktemp("lora") / "run", "lora")


NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture(scope="session")
def ner_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A token-classification run folder laid out like pipeline.run's; its head tags every word B-PER."""
    import json

    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from nlptransfer.config import DataConfig, RunConfig, to_yaml

    out = tmp_path_factory.mktemp("ner") / "run"
    config = BertConfig.from_pretrained(tiny_model_dir, num_labels=len(NER_LABELS),
                                        id2label=dict(enumerate(NER_LABELS)),
                                        label2id={label: i for i, label in enumerate(NER_LABELS)})
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0, 0.0, 0.0, 0.0]))
    model.save_pretrained(out / "model")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out / "model")
    cfg = RunConfig(recipe="ner", task="token-classification", model=tiny_model_dir, output_dir=str(out),
                    data=DataConfig(name="wnut16", max_length=16))
    (out / "config.yaml").write_text(to_yaml(cfg))
    row = {"precision": 0.5, "recall": 0.25, "f1": 1 / 3}
    (out / "metrics.json").write_text(json.dumps({
        "test": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "accuracy": 0.9,
                 "per_type": {"LOC": row | {"support": 4}, "PER": row | {"support": 8}}},
        "epochs": [], "baselines": {"all_o_accuracy": 0.8, "word_lookup_f1": 0.2, "word_lookup_accuracy": 0.85},
        "parameters": {"trainable": 1000, "total": 1000}, "timing": {"train_seconds": 3.0, "best_epoch": 1},
        "data": {"source": "packaged corpus 'wnut16'", "scheme": "IOB2", "label_names": NER_LABELS,
                 "sentences": {"train": 20, "validation": 5, "test": 6}},
    }))
    return out


@pytest.fixture(autouse=True)
def propagating_logger(monkeypatch):
    """A run sets the nlptransfer logger not to propagate (it has its own console and file handlers);
    caplog listens at the root, so each test lets the records through."""
    import logging

    monkeypatch.setattr(logging.getLogger("nlptransfer"), "propagate", True)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared machine busy threads stall each other.

    Use per module: `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One importer for a module's CLI driver processes (tests/forkserver.py): each run is a forked, killable child
    without the imports' ten seconds (tests/test_checkpoint.py's `drive`)."""
    from forkserver import ForkServer

    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = ForkServer(env, tmp_path_factory.mktemp("forkserver"))
    yield started
    started.close()
