"""A model card (README.md) for a run: Hub YAML metadata and a body a reader can trust.

The metadata says what the Hub needs to index the model (`library_name`, `pipeline_tag`,
`base_model`, `datasets`, `license`, `tags`, `model-index` with the held-out test results);
the body says what it was trained for, how (strategy, trainable parameters, hyperparameters),
on what (data and split sizes), how well (per class or per entity type), where it falls short,
and how to use it. Everything comes from the run folder: config.yaml, metrics.json, model/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from .. import catalog, strategies, tasks
from ..config import RunConfig, load_yaml
from ..outputs.model_files import adapter_labels, saved_label_names
from ..outputs.plots import CONFUSION_MATRIX, CURVES, ENTITY_F1

LICENSES = {  # licenses of the catalog's base models
    "sentence-transformers/all-MiniLM-L6-v2": "apache-2.0",
    "google-bert/bert-base-uncased": "apache-2.0",
    "distilbert/distilbert-base-uncased": "apache-2.0",
    "FacebookAI/roberta-base": "mit",
    "albert/albert-base-v2": "apache-2.0",
    "google/electra-base-discriminator": "apache-2.0",
    "microsoft/deberta-v3-base": "mit",
}
CORPUS_LANGUAGES = {"tweets": "en", "bbc_news": "en", "wnut16": "en"}
"""The language (ISO 639-1) of each of the catalog's packaged corpora, for the card's `language:`."""
BASELINES = {
    "majority_accuracy": "majority-class baseline accuracy",
    "tfidf_logreg_accuracy": "TF-IDF + logistic regression baseline accuracy",
    "all_o_accuracy": "all-O tagger token accuracy",
    "word_lookup_f1": "word-lookup tagger entity F1",
    "word_lookup_accuracy": "word-lookup tagger token accuracy",
}
"""Baselines a run may record in metrics.json, with their display names."""
MUST_BEAT = [("accuracy", "majority_accuracy", "the majority-class baseline"),
             ("f1", "word_lookup_f1", "a word-lookup tagger")]
ENCODER_FROM = "encoder_from"
"""metrics.json's record of the run whose encoder a run fine-tuned (`model=runs/A`: hub/lineage.py), if any."""
DISTILLED_FROM = "distilled_from"
"""metrics.json's record of the teacher(s) a distilled student learned from (`nlptransfer.distill`), if any."""


def distilled_text(distilled: dict) -> str:
    """`a student (3 of the teacher's 6 layers ...) distilled from `runs/t` (soft targets at temperature 2, ...)`."""
    teachers = ", ".join(f"`{Path(t).name}`" for t in distilled.get("teachers", []))
    return (f"a student ({distilled.get('student')}) distilled from {teachers} (soft targets at temperature "
            f"{distilled.get('temperature')}, alpha {distilled.get('alpha')}, over {distilled.get('labeled_texts')} "
            f"labeled and {distilled.get('unlabeled_texts')} unlabeled texts)")


def base_model_id(model: str) -> str | None:
    """The hub id of the base checkpoint, or None for a local folder the hub does not know."""
    return catalog.base_model_id(model)


def card_base(cfg: RunConfig, metrics: dict) -> str | None:
    """The hub id the card names as the base: `model=`'s, or for an encoder fine-tuned from an earlier run (sequential
    transfer) that run's own base, which the Hub knows; None where it is a local folder."""
    source = metrics.get(ENCODER_FROM)
    return source.get("base_model") if isinstance(source, dict) else base_model_id(cfg.model)


def source_run_text(source: dict, quote: str = "") -> str:
    """The run an encoder came from in a few words: `run A (recipe topic: task classification, strategy full, data
    bbc_news (packaged corpus), test accuracy 0.9000)`; `quote` marks names in markdown (a backtick)."""
    value = source.get("test_value")
    score = f", test {source.get('test_metric')} {value:.4f}" if isinstance(value, (int, float)) else ""
    return (f"run {quote}{source.get('run')}{quote} (recipe {quote}{source.get('recipe')}{quote}: task "
            f"{quote}{source.get('task')}{quote}, strategy {quote}{source.get('strategy')}{quote}, data "
            f"{source.get('data')}{score})")


def hub_dataset(cfg: RunConfig) -> str | None:
    """The hub dataset id the model was trained on; None for local files and packaged corpora."""
    data = cfg.data
    if data.train_file or not data.name or data.name in catalog.CORPORA or Path(data.name).exists():
        return None
    return data.name


def data_name(cfg: RunConfig) -> str:
    """The training data in a few words, without local paths (markdown: names in backticks)."""
    data = cfg.data
    if data.train_file:
        files = [Path(f).name for f in (data.train_file, data.validation_file, data.test_file) if f]
        return f"local files ({', '.join(files)})"
    if not data.name:  # the Python API's in-memory data
        return "in-memory data (given to `nlptransfer.run`)"
    if data.name in catalog.CORPORA:
        return f"the packaged corpus `{data.name}`"
    return f"the hub dataset `{data.name}`" + (f" (configuration `{data.config}`)" if data.config else "")


def plain_data_name(cfg: RunConfig) -> str:
    """The training data's name as plain text, for the Hub's evaluation widget (it shows markdown literally)."""
    data = cfg.data
    if data.train_file:
        return "local files: " + ", ".join(Path(f).name for f in (data.train_file, data.validation_file,
                                                                  data.test_file) if f)
    if not data.name:
        return "in-memory data"
    if data.name in catalog.CORPORA:
        return f"{data.name} (packaged corpus)"
    return str(data.name) + (f" ({data.config})" if data.config else "")


def data_language(cfg: RunConfig) -> str | None:
    """The training data's language where it is known (the packaged corpora); None for local and hub data."""
    return None if cfg.data.train_file else CORPUS_LANGUAGES.get(cfg.data.name or "")


def describe_data(cfg: RunConfig) -> str:
    """The training data with what it is (packaged corpus) or a link (hub dataset)."""
    name = cfg.data.name
    if hub_dataset(cfg):
        return f"{data_name(cfg)}, https://huggingface.co/datasets/{name}"
    if not cfg.data.train_file and name in catalog.CORPORA:
        return f"{data_name(cfg)}: {catalog.CORPORA[name][2]}"
    return data_name(cfg)


def eval_results(cfg: RunConfig, test: dict) -> list[EvalResult]:
    """The model-index entries: one per overall test metric that the run recorded."""
    dataset = hub_dataset(cfg)
    results = []
    task = tasks.get(cfg.task)
    for metric_type, key, name in task.card_metrics:
        value = test.get(key, test.get(f"overall_{key}"))
        if value is None:
            continue
        results.append(EvalResult(
            task_type=task.pipeline_tag, task_name=task.pipeline_tag.replace("-", " ").title(),
            dataset_type=dataset or "custom", dataset_name=dataset or plain_data_name(cfg),
            dataset_config=cfg.data.config if dataset else None, dataset_split="test",
            metric_type=metric_type, metric_value=round(float(value), 4), metric_name=f"Test {name}",
            metric_args={"average": "macro"} if key == "macro_f1" else None,
        ))
    return results


def metadata(cfg: RunConfig, metrics: dict, model_name: str, adapter_only: bool = False,
             license: str | None = None) -> ModelCardData:
    """The card's YAML header."""
    # an adapter loads onto the model it was trained on: an earlier run's (sequential transfer), not that run's base
    base = None if adapter_only and metrics.get(ENCODER_FROM) else card_base(cfg, metrics)
    dataset = hub_dataset(cfg)
    results = eval_results(cfg, metrics.get("test", {}))
    task, strategy = tasks.get(cfg.task), strategies.get(cfg.strategy)
    return ModelCardData(
        library_name="peft" if adapter_only else "transformers" if strategy.loads_in_transformers(cfg)
        else "nlptransfer",
        pipeline_tag=task.pipeline_tag,
        base_model=base,
        base_model_relation=("adapter" if adapter_only else "finetune") if base else None,
        datasets=[dataset] if dataset else None,
        language=data_language(cfg),
        license=license or LICENSES.get(base or "", "other"),
        tags=["nlptransfer", task.pipeline_tag, strategy.card_tag] + (["peft"] if strategy.adapter else [])
        + (["custom_code", "sentence-transformers", "setfit"] if pooled(cfg) and not adapter_only else []),
        metrics=[r.metric_type for r in results] or None,
        model_name=model_name if results else None,
        eval_results=results or None,
    )


def split_sizes(run_dir: Path, metrics: dict) -> dict[str, int] | None:
    """Examples (NER: sentences) per split: metrics.json's `data` when recorded, else the run's log line."""
    recorded = metrics.get("data") or {}
    recorded = recorded.get("sentences") or recorded.get("examples") or recorded
    if all(isinstance(recorded.get(split), int) for split in ("train", "validation", "test")):
        return {split: recorded[split] for split in ("train", "validation", "test")}
    log = run_dir / "train.log"
    found = re.search(r"(\d+) train / (\d+) validation / (\d+) test", log.read_text(encoding="utf-8")) \
        if log.is_file() else None
    return dict(zip(("train", "validation", "test"), map(int, found.groups()))) if found else None


def training_section(cfg: RunConfig, metrics: dict, note: str | None = None) -> str:
    """Strategy, trainable parameters and the hyperparameters as a table; `note` replaces the strategy's card note."""
    parameters, timing, train = metrics.get("parameters", {}), metrics.get("timing", {}), cfg.train
    strategy = strategies.get(cfg.strategy)
    text = strategy.card_text.replace("the new head", "the head it started with") if cfg.keep_head \
        else strategy.card_text  # keep_head: the earlier run's (or a distillation teacher's) head, not a new one
    lines = ["## Training", "", f"- Transfer strategy: `{strategy.name}`, {text}."]
    if parameters.get("total"):
        share = 100 * parameters["trainable"] / parameters["total"]
        lines.append(f"- Trainable parameters: {parameters['trainable']:,} of {parameters['total']:,} ({share:.2f}%).")
    if note or strategy.card_note:
        lines.append(f"- {note or strategy.card_note}")
    lines += few_shot_lines(cfg, metrics)
    validated = bool(metrics.get("data", {}).get("examples", {}).get("validation", 1))
    if timing.get("train_seconds") is not None:
        best = f"; best validation epoch: {timing.get('best_epoch', '?')}" if validated else ""
        lines.append(f"- Training time: {timing['train_seconds']:.0f} s, {timing.get('optimizer_steps', '?')} "
                     f"optimizer steps{best}.")
    best_by = f"validation {train.metric_for_best}" if validated else "none (the last epoch)"
    options = [  # (the train option, the row's name, its value)
        ("epochs", "epochs", train.epochs), ("max_steps", "max steps", train.max_steps),
        ("batch_size", "batch size", train.batch_size), ("grad_accum_steps", "gradient accumulation",
                                                         train.grad_accum_steps),
        ("lr", "learning rate", train.lr or strategy.default_lr), ("weight_decay", "weight decay", train.weight_decay),
        ("warmup_ratio", "warmup ratio", train.warmup_ratio), ("max_grad_norm", "max grad norm", train.max_grad_norm),
        (None, "max length (tokens)", cfg.data.max_length),
        ("mixed_precision", "mixed precision", train.mixed_precision + (f" ({timing['precision_reason']})"
                                                                        if timing.get("precision_reason") else "")),
        ("metric_for_best", "best epoch by", best_by),
        ("patience", "early-stopping patience", train.patience if validated else None), (None, "seed", cfg.seed)]
    unused = strategy.unused_train_options(cfg)  # replaced by the strategy's own options, in its rows below
    rows = [(name, value) for option, name, value in options if option not in unused]
    rows += strategy.card_rows(cfg)
    rows += [(name, value) for name, value in (("layer lr decay", train.layer_lr_decay), ("head lr", train.head_lr))
             if value is not None]
    lines += ["", "| hyperparameter | value |", "| --- | --- |"]
    lines += [f"| {name} | {'none' if value is None else value} |" for name, value in rows]
    return "\n".join(lines)


def few_shot_lines(cfg: RunConfig, metrics: dict) -> list[str]:
    """How many labeled examples the model saw, when few; that no validation split picked the epoch."""
    examples = metrics.get("data", {}).get("examples", {})
    lines = []
    if cfg.data.examples_per_class is not None:
        lines.append(f"- Few-shot model: trained on {examples.get('train', '?')} labeled examples "
                     f"({cfg.data.examples_per_class} per label, a seeded sample of the training data).")
    if examples and not examples.get("validation"):
        lines.append("- No validation split: training ran for a fixed budget and kept its last weights.")
    return lines


def pooled(cfg: RunConfig) -> bool:
    """Whether the model's head reads a pooled sentence embedding (saved with its own code)."""
    return (cfg.head.pooling or strategies.get(cfg.strategy).default_pooling) != "model"


POOLED_USAGE = ("The head reads a pooled sentence embedding, a class transformers does not have: its code is in "
                "`modeling_nlptransfer.py` beside the weights, hence `trust_remote_code=True` (without it, "
                "transformers refuses the model and says to pass it; config.json's model type, "
                "`nlptransfer-pooled`, is that code's). The same folder loads "
                "in sentence-transformers (`SentenceTransformer(\"{repo}\").encode(texts)`: the embeddings) and "
                "in SetFit (`SetFitModel.from_pretrained(\"{repo}\").predict(texts)`: `model_head.pkl` is the "
                "head as a scikit-learn classifier).")


def data_section(cfg: RunConfig, sizes: dict[str, int] | None) -> str:
    picked = ("The validation split picked the best epoch; " if not sizes or sizes.get("validation")
              else "There was no validation split; ")
    lines = ["## Data", "", f"Trained on {describe_data(cfg)}. {picked}"
             "the test split was held out until the end and gives the results below."]
    if sizes:
        unit = tasks.get(cfg.task).card_unit
        lines += ["", f"| split | {unit} |", "| --- | --- |"] + [f"| {s} | {n:,} |" for s, n in sizes.items()]
    return "\n".join(lines)


def results_section(cfg: RunConfig, metrics: dict) -> str:
    """Overall test metrics, the baselines, and the per class / per entity type table."""
    test = metrics.get("test", {})
    lines = ["## Results on the held-out test split", "", "| metric | value |", "| --- | --- |"]
    for _, key, name in tasks.get(cfg.task).card_metrics:
        value = test.get(key, test.get(f"overall_{key}"))
        if value is not None:
            lines.append(f"| {name} | {value:.4f} |")
    baselines = metrics.get("baselines", {})
    for key, name in BASELINES.items():
        if key in baselines:
            tied = baselines.get("majority_tied_classes") if key == "majority_accuracy" else None
            name += f" ({tied} classes tie in training: the mean of guessing each)" if tied else ""
            lines.append(f"| {name} | {baselines[key]:.4f} |")
    per_label = test.get("per_class") or test.get("per_type") or {}
    if per_label:
        first = "class" if "per_class" in test else "entity type"
        lines += ["", f"| {first} | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} "
                  f"| {row.get('support', row.get('number', ''))} |" for label, row in per_label.items()]
    return "\n".join(lines)


FIGURES = {
    CURVES: "Training loss and (with a validation split) validation metrics per epoch",
    CONFUSION_MATRIX: "Test confusion matrix, normalized per true class",
    ENTITY_F1: "Test F1 per entity type",
}
"""The figures a run may write (plots.py), with the card's caption for each."""


def figures_section(run_dir: Path) -> str | None:
    """The run's figures, linked by relative path (the export copies them beside README.md); None if there are none."""
    present = [(name, caption) for name, caption in FIGURES.items() if (run_dir / name).is_file()]
    if not present:
        return None
    return "\n\n".join(["## Training curves and errors"] + [f"![{caption}]({name})" for name, caption in present])


def limitations_section(cfg: RunConfig, metrics: dict, sizes: dict[str, int] | None) -> str:
    test, baselines = metrics.get("test", {}), metrics.get("baselines", {})
    items = [f"Trained and tested on {data_name(cfg)} only: expect lower quality on text "
             "from other domains, languages or periods, and it inherits that data's biases."]
    task_items = tasks.get(cfg.task).card_limitations(cfg, test, sizes)
    items += task_items[:-1]  # the test-size uncertainty before the baselines, how inputs are read after
    for key, baseline, name in MUST_BEAT:
        if baselines.get(baseline) is not None and test.get(key, 1) <= baselines[baseline]:
            items.append(f"It does not beat {name} on the test split: do not rely on it.")
    items += task_items[-1:]
    if card_base(cfg, metrics) is None:
        items.append("The base checkpoint was a local folder, so the card does not link it.")
    items.append("The license follows the base model's; check the training data's terms before commercial use.")
    return "\n".join(["## Limitations", ""] + [f"- {item}" for item in items])


def trained_length(cfg: RunConfig, run_dir: Path) -> int:
    """The tokens per input the run trained with: the saved tokenizer's `model_max_length` (data.max_length,
    capped at what the checkpoint reads), else data.max_length."""
    for folder in ("model", "adapter"):
        settings = run_dir / folder / "tokenizer_config.json"
        if settings.is_file():
            length = json.loads(settings.read_text(encoding="utf-8")).get("model_max_length")
            if isinstance(length, int) and length <= cfg.data.max_length:
                return length
    return cfg.data.max_length


def usage_section(cfg: RunConfig, repo: str, label_names: list[str], adapter_only: bool,
                  max_tokens: int | None = None) -> str:
    task = tasks.get(cfg.task)
    pipeline_tag, name, extra = task.pipeline_tag, task.card_predictor, task.pipeline_options
    if adapter_only:
        auto = task.peft_auto_class
        id2label = dict(enumerate(label_names))
        label2id = {label: i for i, label in id2label.items()}
        load = (f"from peft import {auto}\nfrom transformers import AutoTokenizer, pipeline\n\n"
                f'model = {auto}.from_pretrained(\n    "{repo}", num_labels={len(label_names)},\n'
                f"    id2label={id2label!r},\n    label2id={label2id!r},\n)\n"
                f'{name} = pipeline("{pipeline_tag}", model=model.merge_and_unload(), '
                f'tokenizer=AutoTokenizer.from_pretrained("{repo}"){extra})\n')
    elif not strategies.get(cfg.strategy).loads_in_transformers(cfg):
        return "\n".join([
            "## Usage", "", "This model loads with nlptransfer only (`pip install nlptransfer`): transformers refuses "
            "its model type.", "", "```python",
            f'from nlptransfer import load_model\n\nprint(load_model("{repo}").predict(["Your text here"]))', "```"])
    else:
        extra += ", trust_remote_code=True" if pooled(cfg) else ""
        load = f'from transformers import pipeline\n\n{name} = pipeline("{pipeline_tag}", model="{repo}"{extra})\n'
    return "\n".join([
        "## Usage", "", "```python", load + f'print({name}("Your text here"))', "```", "",
        *([POOLED_USAGE.format(repo=repo), ""] if pooled(cfg) and not adapter_only else []),
        f"The model reads at most {max_tokens or cfg.data.max_length} tokens of a text (the length it was trained "
        "with, saved as "
        "the tokenizer's `model_max_length`).", "",
        "or with nlptransfer installed (it reads long texts as the run did):", "", "```python",
        f'from nlptransfer import load_model\n\nprint(load_model("{repo}").predict(["Your text here"]))', "```",
    ])


def intro_section(cfg: RunConfig, model_name: str, label_names: list[str], metrics: dict) -> str:
    """The title and what the model was trained for (from which checkpoint, or which earlier run's encoder)."""
    base, source = card_base(cfg, metrics), metrics.get(ENCODER_FROM)
    start = f"[{base}](https://huggingface.co/{base})" if base else "A local checkpoint"
    if isinstance(source, dict):  # sequential transfer: the encoder of an earlier run, under a new head
        head = "and its head (keep_head=true)" if cfg.keep_head else "under a new head"
        start = f"The encoder of {source_run_text(source, '`')}, itself from {start[0].lower() + start[1:]}, {head},"
    if isinstance(metrics.get(DISTILLED_FROM), dict):  # nlptransfer.distill: the teacher, not the checkpoint
        start = distilled_text(metrics[DISTILLED_FROM])
        start = start[0].upper() + start[1:] + ","
    kind, what, names = tasks.get(cfg.task).card_intro(label_names)
    verb = strategies.get(cfg.strategy).card_verb
    return (f"# {model_name}\n\n{start} {verb} {kind} on {describe_data(cfg)}, with nlptransfer (recipe "
            f"`{cfg.recipe}`, strategy `{cfg.strategy}`). {what}: {', '.join(f'`{n}`' for n in names)}.")


def render(cfg: RunConfig, metrics: dict, label_names: list[str], *, run_dir: Path, repo_id: str | None = None,
           adapter_only: bool = False, license: str | None = None) -> str:
    """The whole README.md: YAML metadata between `---` lines, then the body."""
    model_name = repo_id.split("/")[-1] if repo_id else f"{cfg.recipe}-{cfg.strategy}"
    header = metadata(cfg, metrics, model_name, adapter_only, license)
    sizes = split_sizes(run_dir, metrics)
    sections = [
        intro_section(cfg, model_name, label_names, metrics), training_section(cfg, metrics), data_section(cfg, sizes),
        results_section(cfg, metrics), figures_section(run_dir), limitations_section(cfg, metrics, sizes),
        usage_section(cfg, repo_id or "path/to/this/folder", label_names, adapter_only, trained_length(cfg, run_dir)),
    ]
    sections = [section for section in sections if section]
    return f"---\n{header.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"


def run_card(run_dir: str | Path, *, repo_id: str | None = None, adapter_only: bool = False,
             license: str | None = None) -> str:
    """The model card of a finished run folder (config.yaml, metrics.json and model/ or adapter/)."""
    run_dir = Path(run_dir)
    cfg, metrics = run_files(run_dir)
    return render(cfg, metrics, run_label_names(run_dir), run_dir=run_dir, repo_id=repo_id,
                  adapter_only=adapter_only, license=license)


def run_files(run_dir: Path) -> tuple[RunConfig, dict]:
    """A finished run folder's config (config.yaml) and metrics (metrics.json)."""
    cfg = load_yaml(RunConfig(), run_dir / "config.yaml")
    return cfg, json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def run_label_names(run_dir: Path) -> list[str]:
    """The label names in id order, from the saved model's config (or the adapter's labels)."""
    if (run_dir / "model" / "config.json").is_file():
        return saved_label_names(run_dir / "model" / "config.json")
    return adapter_labels(run_dir / "adapter")[1]

