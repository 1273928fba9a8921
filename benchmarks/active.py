"""Active learning simulated on labeled data (issue 27): query strategies against random sampling, the test score vs
labels, the labels of a packaged corpus hidden and revealed batch by batch (`nlptransfer.active.loop.simulate`).

    python benchmarks/active.py                                   # tweets: random, least_confidence, breaking_ties
    python benchmarks/active.py --dataset bbc_news --pool-size 1500 --test-size 400 --max-length 128
    python benchmarks/active.py --dataset wnut16 --pool-size 1790 --test-size 500    # NER: entity F1 (seqeval)
    python benchmarks/active.py --pool-size 200 --test-size 100 --rounds 2 --batch-size 8 --seeds 1 \\
        --out-dir /tmp/active-bench --results /tmp/ACTIVE.md                          # a quick check
    python benchmarks/active.py --dataset wnut16 --pool-size 120 --test-size 60 --rounds 2 --batch-size 8 \\
        --seeds 1 --out-dir /tmp/active-bench --results /tmp/ACTIVE.md                # a quick NER check
    python benchmarks/active.py --report-only                     # ACTIVE.md again from active.jsonl

Each dataset is split once (duplicates dropped, stratified for classification, seed 0) into a pool and a test split;
every query strategy and seed starts from the same random first batch (cold_start=random, the seed's draw) and trains
each round with the same transfer strategy (default `frozen`, the loop's) on the labels so far, tested on the same test
texts. Classification is scored by accuracy; WNUT-16 (task=token-classification, a label is a sentence's tags, a
sentence's uncertainty its words' maximum) by entity F1 (seqeval, strict IOB2, the toolkit's NER metric). Each finished
round is appended to active.jsonl at once: a killed benchmark keeps its rows, a rerun skips finished (strategy, seed)
runs. The report: the mean test score per label count, the area under each curve (the mean score over its points), the
labels each strategy needs to reach random's final mean score, and a PNG of the curves.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # report.machine: the CPU's model and flags


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="tweets", choices=("tweets", "bbc_news", "wnut16"),
                        help="wnut16: NER (task=token-classification), scored by entity F1")
    parser.add_argument("--queries", default="random,least_confidence,breaking_ties")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=16, help="rounds per run: labels up to rounds x batch size")
    parser.add_argument("--pool-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--strategy", default="frozen", help="the transfer strategy each round trains with")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--run-option", action="append", default=[], help="a round's run option, e.g. train.epochs=1")
    parser.add_argument("--out-dir", default="runs/active-bench", help="the loops' folders and active.jsonl")
    parser.add_argument("--results", default=str(HERE / "ACTIVE.md"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.command = "python benchmarks/active.py " + shlex.join(argv)
    return args


TAGGED = ("wnut16",)
"""The NER corpora: task=token-classification, scored by entity F1."""


def tagged(dataset: str) -> bool:
    return dataset in TAGGED


def splits(args: argparse.Namespace) -> tuple[dict, dict]:
    """(pool, test) as text -> label (for NER sentence -> its IOB2 tags): the packaged corpus, duplicates dropped, one
    split (seed 0; stratified by label for classification)."""
    from sklearn.model_selection import train_test_split

    from nlptransfer.data.readers import read_packaged

    if tagged(args.dataset):
        from nlptransfer import catalog
        from nlptransfer.data.conll import read_conll, to_iob2

        found = read_conll(catalog.corpus_path(args.dataset))  # a CoNLL file named .txt
        sentences = list({" ".join(sentence.words): to_iob2(sentence.tags) for sentence in found}.items())
        pool, test = train_test_split(sentences, train_size=args.pool_size, test_size=args.test_size, random_state=0)
        return dict(pool), dict(test)
    frame = read_packaged(args.dataset)["train"].drop_duplicates(subset="text")
    frame = frame[frame["text"].str.strip() != ""]
    frame = frame.assign(text=frame["text"].str.strip(), label=frame["label"].astype(str)).drop_duplicates("text")
    pool, test = train_test_split(frame, train_size=args.pool_size, test_size=args.test_size, random_state=0,
                                  stratify=frame["label"])
    return dict(zip(pool["text"], pool["label"])), dict(zip(test["text"], test["label"]))


def run_one(args: argparse.Namespace, query: str, seed: int, pool: dict, test: dict, rows_path: Path) -> None:
    """One simulated loop; each round's row appended to `rows_path` as it finishes."""
    from nlptransfer.active.loop import ActiveLoop, simulate
    from nlptransfer.active.ner import entity_types
    from nlptransfer.active.options import ActiveOptions
    from nlptransfer.active.options import label_names as names_of
    from nlptransfer.active.state import ActiveFolder
    from nlptransfer.config import RunConfig, apply_overrides

    options = ActiveOptions(model=args.model, strategy=args.strategy, query=query, cold_start="random",
                            batch_size=args.batch_size, seed=seed, label_with="file")
    if tagged(args.dataset):
        options.task = "token-classification"
        options.labels = entity_types(sorted({tag for tags in [*pool.values(), *test.values()] for tag in tags}))
        label_names = names_of(options)
    else:
        label_names = sorted(set(pool.values()) | set(test.values()))
    cfg = apply_overrides(RunConfig(), [f"data.max_length={args.max_length}", *args.run_option])
    out = Path(args.out_dir) / f"{args.dataset}-{query}-{seed}"
    started = time.perf_counter()
    with ActiveFolder(out).open(overwrite=True) as folder:
        loop = ActiveLoop(folder, list(pool), label_names, options, cfg, test)
        records = simulate(loop, pool, args.rounds + 1)  # round 0 is the cold start: rounds trained rounds
    with rows_path.open("a", encoding="utf-8") as file:
        for record in records[1:]:
            file.write(json.dumps({"dataset": args.dataset, "query": query, "seed": seed, "labels": record["labels"],
                                   "metric": metric_of(args.dataset), "score": record["validation_accuracy"],
                                   "seconds": record["seconds"],
                                   "strategy": args.strategy, "pool": len(pool), "test": len(test),
                                   "batch_size": args.batch_size, "command": args.command,
                                   "load_average": round(os.getloadavg()[0], 2), "machine": args.machine,
                                   "total_seconds": round(time.perf_counter() - started, 1)}) + "\n")


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def metric_of(dataset: str) -> str:
    """The test score a dataset's rounds are measured by."""
    return "entity_f1" if tagged(dataset) else "accuracy"


def score(row: dict) -> float:
    """A row's test score (rows from before the metric was named hold it as `accuracy`)."""
    return row["score"] if "score" in row else row["accuracy"]


def curves(rows: list[dict]) -> dict[str, dict[int, float]]:
    """Query -> labels -> the mean test score over seeds."""
    found: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        found.setdefault(row["query"], {}).setdefault(row["labels"], []).append(score(row))
    return {query: {n: statistics.mean(values) for n, values in sorted(points.items())}
            for query, points in found.items()}


def labels_to_reach(curve: dict[int, float], target: float) -> int | None:
    return next((n for n, accuracy in curve.items() if accuracy >= target), None)


def render(rows: list[dict]) -> str:
    """ACTIVE.md: commands, per dataset a table of the mean test score per label count (accuracy, or entity F1 for
    NER, named), the area under each curve, the labels needed."""
    lines = ["# Active learning simulated (issue 27)", ""]
    if not rows:
        return "\n".join(lines + ["No finished runs yet: `python benchmarks/active.py`.", ""])
    lines += ["Commands:", ""] + [f"    {c}" for c in dict.fromkeys(row["command"] for row in rows)] + [""]
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        chosen = [row for row in rows if row["dataset"] == dataset]
        found = curves(chosen)
        counts = sorted({n for curve in found.values() for n in curve})
        seeds = {q: len({row["seed"] for row in chosen if row["query"] == q}) for q in found}
        first, metric = chosen[0], chosen[0].get("metric", "accuracy")
        lines += [f"## {dataset} (pool {first['pool']}, test {first['test']}, batch {first['batch_size']}, "
                  f"strategy {first['strategy']}): mean test {metric}", "",
                  "| query | seeds | " + " | ".join(f"{n} labels" for n in counts)
                  + f" | area ({metric}) | labels to random's final {metric} |",
                  "|" + " --- |" * (len(counts) + 4)]
        final = found.get("random", {}).get(counts[-1]) if "random" in found else None
        for query, curve in found.items():
            reach = labels_to_reach(curve, final) if final is not None else None
            share = f"{reach} ({reach / counts[-1]:.0%})" if reach is not None else "not reached"
            lines.append(f"| {query} | {seeds[query]} | " + " | ".join(
                f"{curve[n]:.4f}" if n in curve else "" for n in counts)
                + f" | {statistics.mean(curve.values()):.4f} | {share if final is not None else 'n/a'} |")
        lines += [""]
    lines += [machine_line(rows)]
    loads = [row["load_average"] for row in rows]
    lines += [f"Load average as rounds finished: {min(loads):.2f} to {max(loads):.2f}. Area: the mean score over the "
              "curve's points. Entity F1: seqeval, strict IOB2 (a label is a sentence's tags). Figures: active.png.",
              ""]
    return "\n".join(lines)


def machine_line(rows: list[dict]) -> str:
    """The CPUs the rows were measured on, with their bf16 and AVX-512 flags."""
    machines = {json.dumps(row["machine"], sort_keys=True): row["machine"] for row in rows if row.get("machine")}
    from report import cpu_description

    described = [cpu_description(m) for m in machines.values()]
    unrecorded = sum(1 for row in rows if not row.get("machine"))
    return ("Machine: " + "; ".join(described or ["not recorded"])
            + (f" ({unrecorded} earlier rows did not record theirs)." if unrecorded and described else "."))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    queries = list(dict.fromkeys(row["query"] for row in rows))  # one colour per query in every panel
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for query, curve in curves([row for row in rows if row["dataset"] == dataset]).items():
            axis.plot(list(curve), list(curve.values()), marker="o", label=query, color=f"C{queries.index(query)}")
        axis.set(title=dataset, xlabel="labels", ylabel=f"test {metric_of(dataset).replace('_', ' ')}")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "active.jsonl"
    if not args.report_only:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        logging.basicConfig(level=logging.WARNING)
        pool, test = splits(args)
        from report import machine

        args.machine = {key: value for key, value in machine().items()
                        if key in ("cpu", "cores", "torch_threads", "bf16_flags", "avx512")}
        print(machine_line([{"machine": args.machine}]), flush=True)
        done = {(row["dataset"], row["query"], row["seed"]) for row in read_rows(rows_path)}
        for seed in range(args.seeds):
            for query in args.queries.split(","):
                if (args.dataset, query, seed) not in done:
                    run_one(args, query, seed, pool, test, rows_path)
                    print(f"{args.dataset} {query} seed {seed} done", flush=True)
    rows = read_rows(rows_path)
    if args.results != "none":
        Path(args.results).write_text(render(rows), encoding="utf-8")
        if rows:
            plot(rows, Path(args.results).with_name("active.png"))
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
