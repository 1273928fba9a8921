"""Shared fixtures: a tiny random BERT checkpoint on disk and the labeled-text assets.

Everything runs offline: the hub is switched off before transformers is imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

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
