"""The active-learning command's options and names (light: `--help` and option errors load no heavy library)."""

from __future__ import annotations

from dataclasses import dataclass

QUERY_NAMES = ("random", "least_confidence", "breaking_ties", "entropy", "bald", "cardinality", "embedding_kmeans",
               "coreset", "badge")
"""The query strategies (`queries.py`): cardinality is multi-label's; embedding_kmeans and coreset need no labels."""
COLD_STARTS = ("embedding_kmeans", "coreset", "random", "zeroshot")
"""How the first batch is picked with no labels: coverage of the embeddings, or zero-shot scores over the label
descriptions (the most unsure under them)."""
LABEL_WITH = ("file", "terminal", "serve")
TASKS = ("classification", "multilabel", "token-classification")


@dataclass
class ActiveOptions:
    pool: str | None = None
    """The unlabeled texts: a csv/tsv/json/jsonl/parquet file with a text column, or a .txt file (one text a line)."""
    labels: list[str] | None = None
    """The label names, e.g. [pos, neg, neu]."""
    output_dir: str | None = None
    """The active-learning folder: labels, rounds, the batch to label; rerunning with it continues."""
    descriptions: dict[str, str] | None = None
    """Label -> description, for cold_start=zeroshot and the contrastive strategy's templated examples."""
    labeled: str | None = None
    """A file of labeled examples to start from (text and label columns), added once."""
    oracle: str | None = None
    """Simulation: a labeled file whose labels answer each batch (its texts are the pool when pool is unset)."""
    test: str | None = None
    """A labeled file to measure each round on (the learning curve); default: every 5th label is held out."""
    text_column: str = "text"
    """The column holding the text in pool, labeled, oracle and test files."""
    label_column: str = "label"
    """The column holding the label in labeled, oracle and test files (and to_label.csv)."""
    task: str = "classification"
    """classification (one label per text), multilabel (labels separated by | in files) or token-classification (NER:
    labels are the entity types; the pool a CoNLL or .txt file of sentences; labeled through to_label.conll, the
    terminal or the page)."""
    model: str = "minilm"
    """The checkpoint each round trains from: a short name, hub id, folder, or an earlier run's folder."""
    strategy: str = "frozen"
    """The transfer strategy each round trains with: frozen (seconds: the pool's encoder outputs are kept across
    rounds) or any strategy (contrastive: minutes a round, re-embedding the pool). The session ends by printing the
    command that trains the final model on the labels with a stronger one."""
    query: str = "breaking_ties"
    """The query strategy: random, least_confidence, breaking_ties, entropy, bald (MC dropout: scores the pool
    mc_passes more times), cardinality (multi-label), embedding_kmeans, coreset, badge."""
    mc_passes: int = 10
    """query=bald: stochastic forward passes (dropout on) over the pool per round, each costing a full scoring pass."""
    cold_start: str = "embedding_kmeans"
    """The first batch without labels: embedding_kmeans (coverage), coreset, random or zeroshot."""
    aggregate: str = "max"
    """NER: a sentence's uncertainty from its words' (max, mean or sum)."""
    balance: bool = False
    """Share each batch among the predicted classes, the rarest labeled class first (ranking strategies)."""
    batch_size: int = 16
    """Texts per batch (per round)."""
    rounds: int = 1
    """Rounds this command runs: file labeling stops after writing to_label.csv; the terminal and the page ask for
    each batch; a simulation runs them all."""
    label_with: str = "file"
    """file (to_label.csv), terminal (one text at a time) or serve (a page on localhost); --terminal, --serve."""
    port: int = 8765
    """The labeling page's port on 127.0.0.1 (label_with=serve); 0: any free port."""
    stop_kappa: float = 0.99
    """The stopping suggestion: kappa between successive rounds' pool predictions at least this ..."""
    stop_rounds: int = 2
    """... for this many rounds in a row."""
    seed: int = 0
    """Seeds the query strategies' draws and each round's run."""
    score_sample: int | None = None
    """Score at most this many pool texts per round: a seeded sample drawn once (the same each round); default all."""
    score_batch_size: int = 64
    """Texts per forward pass while scoring the pool."""
    overwrite: bool = False
    """Start afresh in an active folder (its labels are deleted)."""


def multilabel(task: str) -> bool:
    """Whether the task gives a text several labels."""
    from .. import tasks

    return bool(getattr(tasks.get(task), "multilabel", False))


def tagging(task: str) -> bool:
    """Whether the task tags each word (NER): its model's features are the tokens'."""
    from .. import tasks

    return tasks.get(task).features == "tokens"


def label_names(options: ActiveOptions) -> list[str]:
    """What the model predicts: the label names, or for NER the IOB2 tags of the entity types (tags pass as given)."""
    given = [str(name) for name in options.labels or []]
    if not tagging(options.task) or "O" in given:
        return given
    return ["O"] + [f"{prefix}-{kind}" for kind in given for prefix in ("B", "I")]
