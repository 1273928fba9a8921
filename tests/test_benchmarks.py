"""The benchmark command of issue 6 still runs end to end (on a tiny slice; timings are not asserted).

`benchmarks/bench.py` uses the packaged MiniLM and tweets (offline). With 64 training tweets and
batch 32 every training method takes 2 optimizer steps. (A second frozen run reusing the first one's features is
the feature cache's own test, tests/test_cache.py; the benchmark's `frozen_rerun` is left out here for time.)
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
METHODS = ["trainer_grouped", "full", "frozen"]


def test_bench_writes_a_report_of_every_method(tmp_path):
    results = tmp_path / "RESULTS.md"
    command = [sys.executable, str(BENCHMARKS / "bench.py"), "--train", "64", "--test", "32", "--validation", "32",
               "--methods", ",".join(METHODS), "--results", str(results)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = results.read_text()
    for label in ("Trainer, group_by_length", "nlptransfer full", "nlptransfer frozen"):
        assert f"| {label} |" in report
    assert "## Failed" not in report
    raw = json.loads(report.split("```json", 1)[1].split("```", 1)[0])
    assert all(raw[method]["optimizer_steps"] == math.ceil(64 / 32) for method in METHODS)
    assert raw["full"]["counted_tokens"] == raw["workload"]["train_tokens"]  # the same real tokens are trained
    assert raw["frozen"]["extract_rows"]  # the encoder ran once over the splits
    assert raw["matmul"]["flops"] > 0 and 0 <= raw["full"]["accuracy"] <= 1
    # --precision auto (the default) is fp32 in the suite (conftest sets NLPTRANSFER_NO_BF16) for both sides
    assert raw["full"]["mixed_precision"] == raw["trainer_grouped"]["mixed_precision"] == "no"
    assert raw["matmul"]["dtype"] == "float32" and "- CPU bf16 flags: " in report
