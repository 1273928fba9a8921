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

import pytest

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


def method_measurement(train_seconds: float, accuracy: float) -> dict:
    return {"train_seconds": train_seconds, "optimizer_steps": 2, "epoch_seconds": [train_seconds], "lr": 5e-5,
            "eval_examples": 32, "eval_seconds": 1.0, "accuracy": accuracy, "peak_rss_bytes": 10**9,
            "process_seconds": 10.0, "mixed_precision": "no"}


def seeds_report(full_seconds: list[float], full_accuracy: list[float], flags: list[str]) -> str:
    """`--seeds` report of full against the Trainer with group_by_length (2 s a seed, accuracy 0.60 and 0.62)."""
    work = {"train_examples": 64, "validation_examples": 32, "test_examples": 32, "train_tokens": 2000,
            "train_token_squares": 70000, "layer_parameters": 10**7, "layers": 6, "hidden_size": 384,
            "total_parameters": 2 * 10**7}
    peak = {"flops": 4e12, "dtype": "float32"}
    runs = {seed: {"matmul": peak, "workload": work | {"train_tokens": 2000 + 100 * seed},
                   "trainer_grouped": method_measurement(2.0, trainer_accuracy),
                   "full": method_measurement(seconds, accuracy), "matmul_after": peak}
            for seed, seconds, accuracy, trainer_accuracy in zip((0, 1), full_seconds, full_accuracy, (0.60, 0.62))}
    host = bench_report.machine() | {"load_before": (0.0,) * 3, "load_after": (0.0,) * 3, "total_seconds": 60.0,
                                     "bf16_flags": flags}
    spec = bench_methods.Slice(train=64, test=32, validation=32, seed=0)
    return bench_report.render_seeds(runs, ["trainer_grouped", "full"], spec, host, "python benchmarks/bench.py")


def test_several_seeds_are_summarized_and_judged_against_issue_26s_goal():
    # 64 examples in 1 s against 2 s: 2x the Trainer; useful FLOPs 6 * (1e7 * 2000 + 2 * 6 * 384 * 70000) per second
    # against the 4 TFLOP/s peak: 3.0% (3.2% with seed 1's 2100 tokens); accuracy 0.61 against 0.61 (sd 0.014)
    report = seeds_report([1.0, 1.0], [0.60, 0.62], ["amx_bf16", "amx_tile"])
    assert "data: packaged tweets, seeds 0, 1:" in report and "2000, 2100 real training tokens" in report
    assert "| nlptransfer full | 64.0, 64.0 | 64.0 ± 0.0 | 0.6000, 0.6200 | 0.6100 ± 0.0141 | 3% |" in report
    assert "- [x] full ≥ 1.5× the Trainer with group_by_length, training samples/s (means): 2.00×" in report
    assert "- [x] full's test accuracy equal to the Trainer's within the seeds' spread: +0.00 points" in report
    assert "- [ ] full ≥ 30% of the matmul peak measured in this invocation: 3%" in report
    assert "This CPU has no AMX" not in report and "## Seed 1" in report and "### Training" in report
    # 1.25x the Trainer's speed, and 2 points below it with a spread of 1.4: both checks fail; no AMX is said
    report = seeds_report([1.6, 1.6], [0.58, 0.60], [])
    assert "- [ ] full ≥ 1.5× the Trainer with group_by_length, training samples/s (means): 1.25×" in report
    assert "- [ ] full's test accuracy equal to the Trainer's within the seeds' spread: -2.00 points" in report
    assert "This CPU has no AMX: the goal is set for one" in report


def test_seeds_must_be_one_or_more(capsys):
    import bench

    with pytest.raises(SystemExit) as stopped:
        bench.parse_args(["--seeds", "0"])
    assert stopped.value.code == 2 and "--seeds must be 1 or more; got 0" in capsys.readouterr().err
