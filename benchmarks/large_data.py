"""Data larger than memory (issue 18, part 1): peak RSS and time from data load to the first optimizer step.

    python benchmarks/large_data.py                        # 1M and 10M rows: memory vs arrow, csv and parquet
    python benchmarks/large_data.py --rows 1000000 --runs arrow-csv,arrow-csv-rerun    # a part of it
    python benchmarks/large_data.py --rows 20000 --results none                       # a quick check

It writes generated tables of short sentences (6 to 16 words from the packaged tweets' 5,000
commonest words, three labels that the words hint at) to `--data-dir`, as csv and parquet, once.
Each run is a fresh process (`--child`) doing `recipe`-like full fine-tuning of the packaged MiniLM
(max length 64, batch 32) on the file with `data.max_train_samples=null`; validation and test are
capped at 10,000 rows each so that the runs measure the training data. A callback stops the run at
its first optimizer step and reports the seconds since the run started (imports excluded, shown
apart), the peak RSS of the run's process until then, and the peak RSS of its largest tokenizing
worker. `-rerun` runs repeat the one before with the caches it left (Arrow table, token cache).
The cache is a folder of its own (`--cache`), emptied before the first run of each size.
It prints a table and writes `benchmarks/LARGE_DATA.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD_MARK = "LARGE-DATA-CHILD "
RUNS = ("memory-csv", "arrow-csv", "arrow-csv-rerun", "arrow-parquet", "arrow-parquet-rerun")
GOAL_RSS_MB = 3000


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,10000000", help="table sizes, comma-separated")
    parser.add_argument("--runs", default=",".join(RUNS),
                        help=f"runs per size, in order (of {', '.join(RUNS)}); memory-csv is skipped above 2M rows "
                             "(it would need about 5 KB a row)")
    parser.add_argument("--data-dir", default="/tmp/nlptransfer-large", help="where the generated tables go")
    parser.add_argument("--cache", default="/tmp/nlptransfer-large/cache", help="NLPTRANSFER_CACHE of the runs")
    parser.add_argument("--num-proc", type=int, default=None, help="data.num_proc (default: one per core)")
    parser.add_argument("--results", default=str(HERE / "LARGE_DATA.md"), help="report path, or 'none'")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def vocabulary() -> tuple[list[str], dict[str, list[str]]]:
    """The packaged tweets' 5,000 commonest words, and 200 words most typical of each sentiment."""
    import pandas as pd

    from nlptransfer import catalog

    frame = pd.read_csv(catalog.corpus_path("tweets"), encoding_errors="replace")
    counts, by_label = Counter(), {}
    for text, label in zip(frame["text"].astype(str), frame["sentiment"].astype(str)):
        words = [w for w in text.lower().split() if w.isalpha()]
        counts.update(words)
        by_label.setdefault(label, Counter()).update(words)
    common = [w for w, _ in counts.most_common(5000)]
    typical = {label: [w for w, n in c.most_common(2000) if n > 3 * (counts[w] - n) / max(len(by_label) - 1, 1)][:200]
               for label, c in by_label.items()}
    return common, typical


def generate(rows: int, folder: Path) -> dict[str, Path]:
    """`rows` unique sentences with labels, as csv and parquet (written once, then reused)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    paths = {"csv": folder / f"sentences-{rows}.csv", "parquet": folder / f"sentences-{rows}.parquet"}
    if all(p.is_file() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    common, typical = vocabulary()
    labels = sorted(typical)
    rng = np.random.default_rng(0)
    schema = pa.schema([("text", pa.string()), ("label", pa.string())])
    partial = {kind: path.with_suffix(path.suffix + ".partial") for kind, path in paths.items()}
    started = time.perf_counter()
    with pcsv.CSVWriter(str(partial["csv"]), schema) as csv, pq.ParquetWriter(str(partial["parquet"]), schema) as pqw:
        for start in range(0, rows, 500_000):
            n = min(500_000, rows - start)
            lengths = rng.integers(6, 17, n)
            words = rng.integers(0, len(common), (n, 16))
            label_ids = rng.integers(0, len(labels), n)
            hints = rng.integers(0, 200, (n, 2))
            texts = []
            for i in range(n):
                label = labels[label_ids[i]]
                sentence = [common[j] for j in words[i, :lengths[i]]]
                pool = typical[label]
                sentence[1] = pool[hints[i, 0] % len(pool)]
                sentence[-2] = pool[hints[i, 1] % len(pool)]
                texts.append(" ".join(sentence) + f" #{start + i}")  # every text unique
            batch = pa.record_batch([pa.array(texts), pa.array([labels[k] for k in label_ids])], schema=schema)
            csv.write_batch(batch)
            pqw.write_batch(batch)
    for kind, path in paths.items():
        os.replace(partial[kind], path)
    print(f"generated {rows:,} rows in {time.perf_counter() - started:.0f}s: "
          + ", ".join(f"{p.name} {p.stat().st_size / 1e6:,.0f} MB" for p in paths.values()), flush=True)
    return paths


def child(spec: dict) -> None:
    """One run in this fresh process, stopped at its first optimizer step; prints its figures as one JSON line."""
    os.environ["NLPTRANSFER_CACHE"] = spec["cache"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import psutil

    from nlptransfer.config import DataConfig, RunConfig, TrainConfig
    from nlptransfer.engine.loop import Callback
    from nlptransfer.pipeline import Inputs, run

    imported = time.perf_counter()
    imports_seconds = time.time() - psutil.Process().create_time()

    class FirstStep(Exception):
        pass

    class StopAtFirstStep(Callback):
        def on_step_end(self, loop, loss, lr) -> None:
            self.figures = {"seconds_to_first_step": time.perf_counter() - imported,
                            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                            "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
            raise FirstStep

    stop = StopAtFirstStep()
    cfg = RunConfig(model="minilm", strategy="full", output_dir=spec["output_dir"], overwrite=True,
                    data=DataConfig(train_file=spec["file"], backend=spec["backend"], max_length=64,
                                    max_validation_samples=10_000, max_test_samples=10_000,
                                    num_proc=spec.get("num_proc")),
                    train=TrainConfig(epochs=1, batch_size=32, max_steps=1))
    try:
        run(cfg, Inputs(callbacks=[stop]))
    except FirstStep:
        pass
    figures = stop.figures | {"imports_seconds": imports_seconds}
    print(CHILD_MARK + json.dumps(figures), flush=True)


def run_child(spec: dict) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    marked = [line for line in done.stdout.splitlines() if line.startswith(CHILD_MARK)]
    if done.returncode or not marked:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: {' | '.join(tail)}", "wall_seconds": time.perf_counter() - started}
    return json.loads(marked[-1][len(CHILD_MARK):]) | {"wall_seconds": time.perf_counter() - started}


def report(rows: list[dict]) -> str:
    lines = ["| rows | run | time to first step (s) | peak RSS, run (MB) | peak RSS, largest worker (MB) | "
             "rerun speed-up | process wall (s) |", "|---|---|---|---|---|---|---|"]
    before = {}
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['rows']:,} | {row['run']} | failed: {row['error']} | | | | |")
            continue
        speedup = ""
        if row["run"].endswith("-rerun") and row["run"][:-6] in before:
            speedup = f"{before[row['run'][:-6]] / row['seconds_to_first_step']:.1f}x"
        before[row["run"]] = row["seconds_to_first_step"]
        lines.append(f"| {row['rows']:,} | {row['run']} | {row['seconds_to_first_step']:.1f} | {row['rss_mb']:,.0f} | "
                     f"{row['worker_rss_mb']:,.0f} | {speedup} | {row['wall_seconds']:.0f} |")
    return "\n".join(lines)


def checklist(rows: list[dict]) -> list[str]:
    ok = [row for row in rows if "error" not in row and row["run"].startswith("arrow")]
    items = []
    if ok:
        worst = max(ok, key=lambda r: r["rss_mb"])
        items.append(f"- peak RSS of the run at most {GOAL_RSS_MB:,} MB on the arrow backend: worst "
                     f"{worst['rss_mb']:,.0f} MB ({worst['rows']:,} rows, {worst['run']}): "
                     f"{'met' if worst['rss_mb'] <= GOAL_RSS_MB else 'missed'}")
    for kind in ("csv", "parquet"):
        cold = {r["rows"]: r for r in ok if r["run"] == f"arrow-{kind}"}
        warm = {r["rows"]: r for r in ok if r["run"] == f"arrow-{kind}-rerun"}
        for size in sorted(set(cold) & set(warm)):
            ratio = cold[size]["seconds_to_first_step"] / warm[size]["seconds_to_first_step"]
            items.append(f"- {kind}, {size:,} rows: rerun reaches the first step {ratio:.1f}x sooner (goal 10x): "
                         f"{'met' if ratio >= 10 else 'missed'}")
        if len(cold) >= 2:
            small, large = min(cold), max(cold)
            change = cold[large]["rss_mb"] / cold[small]["rss_mb"] - 1
            items.append(f"- {kind}: peak RSS at {large:,} rows is {change:+.0%} of that at {small:,} (goal within "
                         f"20%): {'met' if abs(change) <= 0.2 else 'missed'}")
    return items


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return
    sizes = [int(n) for n in args.rows.split(",")]
    runs = [name for name in args.runs.split(",") if name]
    unknown = [name for name in runs if name not in RUNS]
    if unknown:
        raise SystemExit(f"unknown run {unknown[0]}; use {', '.join(RUNS)}")
    rows = []
    for size in sizes:
        paths = generate(size, Path(args.data_dir))
        shutil.rmtree(args.cache, ignore_errors=True)
        for name in runs:
            backend, kind = name.split("-")[:2]
            if backend == "memory" and size > 2_000_000:
                print(f"{size:,} rows, {name}: skipped (in memory it would need about {size * 5e3 / 1e9:.0f} GB)")
                continue
            spec = {"file": str(paths[kind]), "backend": backend, "cache": args.cache, "num_proc": args.num_proc,
                    "output_dir": str(Path(args.data_dir) / f"run-{size}-{name}")}
            row = {"rows": size, "run": name} | run_child(spec)
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = report(rows)
    print(table)
    print("\n".join(checklist(rows)))
    if args.results != "none":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from report import cpu_description
        from report import machine as host_facts

        machine = cpu_description(host_facts())
        text = (f"# Data larger than memory: time and memory to the first optimizer step\n\n"
                f"Measured on {machine} with `python benchmarks/large_data.py --rows {args.rows} --runs "
                f"{args.runs}` ({time.strftime('%Y-%m-%d')}). See the script's docstring for what each run does.\n\n"
                f"{table}\n\n" + "\n".join(checklist(rows)) + "\n")
        Path(args.results).write_text(text)
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
