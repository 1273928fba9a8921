"""Predict throughput of each serving runtime against `transformers.pipeline(batch_size=32)`, with accuracy (issue 18).

    python benchmarks/bench_predict.py                      # the sentiment run under runs/, its whole test split
    python benchmarks/bench_predict.py --model runs/RUN     # another finished classification run
    python benchmarks/bench_predict.py --quick              # 256 texts, one pass, writes no report

The texts are the run's own test split (its predictions.jsonl, with the gold labels). Each method runs in a
process of its own (its peak RSS is its own): `pipeline` is transformers' text-classification pipeline on the
saved fp32 model, batch 32, truncated to the run's max_length; `torch` (nlptransfer's exact default), `bf16`, `int8`,
`onnx` and `onnx-int8` are `nlptransfer.load_model(run, runtime=...).predict(texts, batch_size=32)`. The ONNX
files are exported first when missing or stale (`python -m nlptransfer.export`, timed). Without `--model` it
takes the newest finished `recipe=sentiment` run under runs/, and trains one when there is none (~10 minutes).
Writes benchmarks/PREDICT.md (`--results`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import run_child

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
METHODS = ("pipeline", "torch", "bf16", "int8", "onnx", "onnx-int8")
LABELS = {"pipeline": "transformers.pipeline(batch_size=32), fp32", "torch": "nlptransfer predict, fp32 (default)",
          "bf16": "nlptransfer predict runtime=bf16",
          "int8": "nlptransfer predict runtime=int8", "onnx": "nlptransfer predict runtime=onnx",
          "onnx-int8": "nlptransfer predict runtime=onnx-int8"}
GOAL_SPEEDUP, GOAL_POINTS = 2.0, 1.0
AMX_SPEEDUP, AMX_POINTS = 4.0, 0.5
"""Issue 18's goal for the int8 runtimes; issue 26's for runtime=bf16 on a CPU with AMX."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a finished classification run folder (default: the sentiment run)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, help="the first N test texts only")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the texts; the best counts")
    parser.add_argument("--quick", action="store_true", help="256 texts, one pass, no report: a smoke test")
    parser.add_argument("--results", default=str(HERE / "PREDICT.md"), help="the report's path, or none")
    parser.add_argument("--child"), parser.add_argument("--workdir"), parser.add_argument("--result-file")
    args = parser.parse_args(argv)
    if args.quick:
        args.limit, args.repeats, args.results = args.limit or 256, 1, "none"
    return args


# ---- in each method's process -----------------------------------------------------------------------------------

def test_split(run: Path, limit: int | None) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = rows[:limit] if limit else rows
    return [row["text"] for row in rows], [row["label"] for row in rows]


def labeller(method: str, run: Path, batch_size: int):
    """A function from texts to predicted labels, for `method`."""
    if method == "pipeline":
        from transformers import pipeline

        from nlptransfer.predictor import find_model, input_limits, run_config

        model_dir = find_model(run, str(run))[1]
        pipe = pipeline("text-classification", model=str(model_dir), device="cpu")
        max_length, _ = input_limits(pipe.model, pipe.tokenizer.model_max_length, run_config(run))
        return lambda texts: [row["label"] for row in pipe(texts, batch_size=batch_size, truncation=True,
                                                              max_length=max_length)], pipe.model
    from nlptransfer import load_model

    predictor = load_model(run, runtime=method)
    return lambda texts: [row["label"] for row in predictor.predict(texts, batch_size=batch_size)], predictor.pipe.model


def profile(predict, texts: list[str]) -> list[dict]:
    """The torch operators taking most of the time over `texts` (self CPU time, share of the total)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as profiler:
        predict(texts)
    events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:6]
    return [{"op": e.key, "share": e.self_cpu_time_total / total} for e in top]


def measure(method: str, run: Path, limit: int | None, batch_size: int, repeats: int) -> dict:
    """Load (timed), warm up, then the best of `repeats` timed passes over the test texts, and the accuracy."""
    import torch

    texts, gold = test_split(run, limit)
    started = time.perf_counter()
    predict, model = labeller(method, run, batch_size)
    load_seconds = time.perf_counter() - started
    predict(texts[:2 * batch_size])
    passes = []
    for _ in range(repeats):
        started = time.perf_counter()
        labels = predict(texts)
        passes.append(time.perf_counter() - started)
    seconds = min(passes)
    result = {"texts": len(texts), "load_seconds": load_seconds, "seconds": seconds, "passes": passes,
              "texts_per_second": len(texts) / seconds, "accuracy": sum(map(str.__eq__, labels, gold)) / len(gold),
              "labels": labels, "threads": torch.get_num_threads()}
    if method in ("torch", "int8", "pipeline"):
        result["profile"] = profile(predict, texts[:8 * batch_size])
    return result


def child_main(args: argparse.Namespace) -> None:
    measured = measure(args.child, Path(args.model), args.limit, args.batch_size, args.repeats)
    Path(args.result_file).write_text(json.dumps(measured))


# ---- the benchmark ------------------------------------------------------------------------------------------------

def sentiment_run() -> Path:
    """The newest finished recipe=sentiment run under runs/, or a new one."""
    finished = [m.parent for m in (ROOT / "runs").glob("*/metrics.json")
                if "recipe: sentiment" in (m.parent / "config.yaml").read_text(encoding="utf-8")]
    if finished:
        return max(finished, key=lambda run: (run / "metrics.json").stat().st_mtime)
    run = ROOT / "runs" / "bench-predict-sentiment"
    print(f"no finished sentiment run under runs/: training {run} (about 10 minutes on 2 cores)", flush=True)
    subprocess.run([sys.executable, "-m", "nlptransfer.run", "recipe=sentiment", f"output_dir={run}", "--quiet"],
                   check=True, cwd=ROOT)
    return run


def export_if_needed(run: Path, methods: list[str]) -> dict:
    """Export the ONNX files the methods run, when they are missing or stale; the export's time and sizes."""
    from nlptransfer import runtimes
    from nlptransfer.errors import ModelError
    from nlptransfer.predictor import find_model

    model_dir = find_model(run, str(run))[1]
    wanted = [m for m in methods if m in runtimes.EXPORTED]
    try:
        for method in wanted:
            runtimes.check_export(model_dir, runtimes.get(method))
        seconds = None
    except ModelError:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nlptransfer.export", str(run), f"formats={','.join(wanted)}",
                        "--quiet"], check=True, cwd=ROOT)
        seconds = time.perf_counter() - started
    sizes = {name: (model_dir / runtimes.get(name).file).stat().st_size for name in wanted}
    return {"export_seconds": seconds, "sizes": sizes | {"safetensors": sum(
        p.stat().st_size for p in model_dir.glob("*.safetensors"))}}


def machine() -> dict:
    import onnxruntime
    import torch
    import transformers

    cpu, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
            "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__,
            "int8_instructions": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags],
            "bf16_instructions": [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags],
            "quantized_engine": torch.backends.quantized.engine}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    from report_predict import render

    run = Path(args.model) if args.model else sentiment_run()
    methods = args.methods.split(",")
    started, load_before = time.perf_counter(), os.getloadavg()
    exported = export_if_needed(run, methods)
    child = [f"--model={run}", f"--batch-size={args.batch_size}", f"--repeats={args.repeats}"] + (
        [f"--limit={args.limit}"] if args.limit else [])
    measured = {}
    with tempfile.TemporaryDirectory(prefix="nlptransfer-bench-predict-") as folder:
        for method in methods:
            print(f"[{time.perf_counter() - started:5.0f}s] {method} ...", flush=True)
            measured[method] = run_child(method, child, Path(folder), Path(__file__).resolve())
    host = machine() | exported | {"load_before": load_before, "load_after": os.getloadavg(), "run": str(run),
                                   "total_seconds": time.perf_counter() - started}
    report = render(measured, host, shlex.join(["python", "benchmarks/bench_predict.py", *argv]))
    print(report)
    if args.results != "none":
        Path(args.results).write_text(report, encoding="utf-8")
        print(f"written to {args.results}")


if __name__ == "__main__":
    main()
