"""benchmarks/fewshot.py (issue 17) plans its runs and writes FEWSHOT.md from rows; no model runs here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "fewshot.py"
spec = importlib.util.spec_from_file_location("fewshot_benchmark", SCRIPT)
fewshot = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = fewshot  # dataclasses resolve annotations through sys.modules
spec.loader.exec_module(fewshot)

MACHINE = {"nproc": 2, "cpu": "AMD EPYC", "torch": "2", "transformers": "5", "setfit": "1.2.0"}


def row(method: str, size: int, seed: int, accuracy: float, total: float, **extra) -> dict:
    return {"part": "fewshot", "dataset": "tweets", "method": method, "size": size, "seed": seed,
            "test_examples": 2000, "max_length": 64, "accuracy": accuracy, "train_seconds": total / 2,
            "total_seconds": total, "command": "python benchmarks/fewshot.py", "machine": MACHINE,
            "load_average": 0.5, "finished": "2026-12-01T10:00:00+00:00"} | extra


def test_runs_are_planned_once_per_size_and_seed_and_size_0_for_the_label_free_methods():
    args = fewshot.parse_args(["--datasets", "tweets", "--sizes", "8,16", "--seeds", "2",
                               "--methods", "setfit,zeroshot,cold-start,majority"])
    assert fewshot.planned_runs(args) == [
        ("tweets", "setfit", 8, 0), ("tweets", "setfit", 8, 1), ("tweets", "setfit", 16, 0),
        ("tweets", "setfit", 16, 1), ("tweets", "zeroshot", 0, 0), ("tweets", "majority", 0, 0),
        ("tweets", "cold-start", 0, 0),
        ("tweets", "cold-start", 0, 1)]


def test_report_has_a_table_per_dataset_and_checks_the_goal_at_every_size():
    rows = [row("setfit", 8, 0, 0.60, 30.0), row("setfit", 8, 1, 0.62, 30.0), row("contrastive", 8, 0, 0.63, 12.0),
            row("contrastive", 8, 1, 0.65, 12.0), row("setfit", 16, 0, 0.70, 40.0),
            row("contrastive", 16, 0, 0.69, 15.0), row("zeroshot", 0, 0, 0.40, 8.0)]
    report = fewshot.render(rows)
    assert "    python benchmarks/fewshot.py" in report and "nproc 2, AMD EPYC" in report
    assert "| setfit |  |  | 0.610 ± 0.014 (2) | 15.0 / 30.0 | 0.700 ± n/a (1) | 20.0 / 40.0 |" in report
    assert "| zeroshot | 0.400 ± n/a (1) | 4.0 / 8.0 |" in report
    assert "- k=8: accuracy +0.030 (0.640 vs 0.610; 2 vs 2 seeds), total time ratio 0.40" in report
    assert "per seed (same examples): +0.030, +0.030 (at least setfit's on 2 of 2)" in report
    assert "different days" not in report
    later = fewshot.render([row("setfit", 8, 0, 0.6, 30.0), row("contrastive", 8, 0, 0.6, 12.0, finished="2026-12-07")])
    assert "(measured on different days, 2026-12-07 and 2026-12-01: the time ratio may compare different" in later
    assert "- k=16: accuracy -0.010" in report and "Goal at every size: **not met**." in report


def test_seconds_measured_beside_another_job_do_not_fail_the_time_goal_but_are_marked():
    loaded = [row("setfit", 8, 0, 0.60, 30.0), row("contrastive", 8, 0, 0.63, 20.0, load_average=3.4)]
    report = fewshot.render(loaded)
    assert "k=8: accuracy +0.030" in report and "accuracy holds, time not comparable" in report
    assert "(load average contrastive up to 3.4: measured beside another job, its seconds inflated)" in report
    assert "Goal at every size: **undecided**" in report
    behind = fewshot.render([row("setfit", 8, 0, 0.60, 30.0), row("contrastive", 8, 0, 0.55, 20.0, load_average=3.4)])
    assert "does not hold" in behind and "Goal at every size: **not met**" in behind  # accuracy fails whatever the load
    quiet = fewshot.render([row("setfit", 8, 0, 0.60, 30.0), row("contrastive", 8, 0, 0.63, 12.0)])
    assert ": holds" in quiet and "load average" not in quiet.split("Goal at every size")[0].split("k=8:")[1]


def test_scaling_rows_make_a_second_table():
    scaled = [row("setfit", 64, 0, 0.6, 100.0, part="scaling", process_seconds=110.0, peak_rss_kb=2048 * 1024),
              row("contrastive", 64, 0, 0.62, 40.0, part="scaling", process_seconds=55.0, peak_rss_kb=1024 * 1024),
              row("setfit", 333, 0, 0.0, 0.0, part="scaling", process_seconds=14400.0, peak_rss_kb=1024,
                  timed_out=True),
              row("contrastive-supcon", 64, 0, 0.61, 30.0, part="scaling", process_seconds=45.0, peak_rss_kb=1024)]
    report = fewshot.render(scaled)
    assert "| contrastive | 192 (64/class) | 0.620 | 20.0 | 40.0 | 55.0 | 1024 |" in report
    # an earlier setting's row (renamed when the default changed) follows the two methods of its size
    position = [report.index(f"| {method} | {size}") for method, size in
                (("contrastive", 192), ("contrastive-supcon", 192), ("setfit", 999))]
    assert position == sorted(position)
    assert "| setfit | 999 (333/class) | timed out |  |  | > 14400 | 1 |" in report
    assert "192 examples: contrastive / setfit process time 0.50, peak RSS 0.50, accuracy +0.020." in report


def test_a_variant_is_contrastive_with_its_options_run_and_reported_under_its_name():
    args = fewshot.parse_args(["--datasets", "tweets", "--sizes", "8", "--seeds", "1",
                               "--variant", "steps50:contrastive.min_steps=50,train.lr=5e-5"])
    assert fewshot.method_options("steps50") == {"strategy": "contrastive", "contrastive": {"min_steps": 50},
                                                 "train": {"lr": 5e-5}}
    assert ("tweets", "steps50", 8, 0) in fewshot.planned_runs(args)
    report = fewshot.render([row("steps50", 8, 0, 0.5, 10.0)])
    assert "| steps50 |" in report


def test_held_out_sets_are_cut_from_the_packaged_corpora_and_marked_in_the_report():
    frame = fewshot.corpus_frame("wnut_mentions")
    assert set(frame["label"]) == {"person", "location", "company", "none"}
    assert (frame["label"] == "none").sum() == 300
    report = fewshot.render([row("setfit", 8, 0, 0.5, 10.0, dataset="wnut_mentions")])
    assert "**Held out** (never used to choose a default): WNUT-16 tweets by the one entity type" in report
    assert "**Held out**" not in fewshot.render([row("setfit", 8, 0, 0.5, 10.0)])
