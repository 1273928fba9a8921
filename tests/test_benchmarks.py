"""The benchmark command of issue 6 still runs end to end (on a tiny slice; timings are not asserted).

`benchmarks/bench.py` on the packaged tweets (offline) and a tiny random BERT (`--model`; the benchmark's default is the
packaged MiniLM). With 64 training tweets and batch 32 every training method takes 2 optimizer steps. The command runs
end to end once, with `full` (each step a child process: matmul, workload, full, matmul again); the Trainer's and
`frozen`'s children are called in this process and their measurements rendered into the same report (a process per
method cost a minute of the suite in imports alone). A second frozen run reusing the first one's features is the
feature cache's own test, tests/test_cache.py.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import methods as bench_methods  # noqa: E402
import report as bench_report  # noqa: E402

SLICE = ["--train", "64", "--test", "32", "--validation", "32"]


def test_bench_writes_a_report_of_the_full_method_with_the_matmul_peak(tmp_path, tiny_model_dir):
    results = tmp_path / "RESULTS.md"
    command = [sys.executable, str(BENCHMARKS / "bench.py"), *SLICE, "--methods", "full", "--results", str(results),
               "--model", tiny_model_dir]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = results.read_text()
    assert "| nlptransfer full |" in report and "## Failed" not in report
    raw = json.loads(report.split("```json", 1)[1].split("```", 1)[0])
    assert raw["full"]["optimizer_steps"] == math.ceil(64 / 32)
    assert raw["full"]["counted_tokens"] == raw["workload"]["train_tokens"]  # the same real tokens are trained
    assert raw["matmul"]["flops"] > 0 and raw["matmul_after"]["flops"] > 0 and 0 <= raw["full"]["accuracy"] <= 1
    assert raw["full"]["peak_rss_bytes"] > 0  # measured per child process
    # --precision auto (the default) is fp32 in the suite (conftest sets NLPTRANSFER_NO_BF16)
    assert raw["full"]["mixed_precision"] == "no"
    assert raw["matmul"]["dtype"] == "float32" and "- CPU bf16 flags: " in report


def test_the_trainer_and_frozen_measure_the_same_slice_and_fill_their_rows(tmp_path, tiny_model_dir):
    spec = bench_methods.Slice(train=64, test=32, validation=32, model=tiny_model_dir)
    chosen = ["trainer_grouped", "frozen"]
    children = bench_methods.methods(spec, tmp_path, own_lr=False)
    measured = {}
    for name in ["workload", *chosen]:  # what run_child adds to a child's JSON, measured here in this process
        started = time.perf_counter()
        measured[name] = children[name]()
        measured[name] |= {"process_seconds": time.perf_counter() - started,
                           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    assert all(measured[name]["optimizer_steps"] == math.ceil(64 / 32) for name in chosen)
    assert measured["frozen"]["extract_rows"]  # the encoder ran once over the splits
    # the same precision on both sides: the Trainer gets bf16=True only where nlptransfer's auto resolves to bf16
    assert measured["trainer_grouped"]["mixed_precision"] == measured["frozen"]["mixed_precision"] == "no"
    host = bench_report.machine() | {"load_before": (0.0,) * 3, "load_after": (0.0,) * 3, "total_seconds": 1.0}
    report = bench_report.render(measured, chosen, spec, host, "python benchmarks/bench.py")
    for label in ("Trainer, group_by_length", "nlptransfer frozen"):
        assert f"| {label} |" in report
    assert tiny_model_dir in report  # the model that was measured is named
