"""This tree against an earlier commit, side by side: the same command, alternating, on one quiet machine.

    python benchmarks/side_by_side.py --baseline db41a3e --rounds 2
    python benchmarks/side_by_side.py --baseline db41a3e -- recipe=sentiment strategy=lora

Checks out `--baseline` into a temporary git worktree, then runs `python -m nlptransfer.run <args>`
`--rounds` times from each tree, alternating (baseline, current, baseline, ...), each in a fresh
process and run folder, and prints each run's test metrics and training samples/s with the ratio
of the medians. Default arguments: `recipe=sentiment` (the README's main job). Nothing else may run
on the machine meanwhile: the figure is a wall-clock rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def checkout(revision: str, folder: Path) -> Path:
    """A worktree of `revision`; its recipes/ is linked where the package expects it (nlptransfer/recipes)."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), revision], check=True,
                   capture_output=True)
    link = folder / "nlptransfer" / "recipes"
    if not link.exists():
        link.symlink_to(folder / "recipes", target_is_directory=True)
    return folder


def run_once(tree: Path, arguments: list[str], output_dir: Path) -> dict:
    """One run from `tree` in a process of its own; its metrics.json."""
    env = os.environ | {"PYTHONPATH": str(tree), "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "nlptransfer.run", *arguments, f"output_dir={output_dir}", "--quiet"]
    finished = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"{tree}: exit {finished.returncode}: {finished.stderr.strip().splitlines()[-1:]}")
    return json.loads((output_dir / "metrics.json").read_text(encoding="utf-8"))


def row(name: str, metrics: dict) -> list:
    test, timing = metrics["test"], metrics["timing"]
    return [name, test.get("accuracy"), test.get("macro_f1", test.get("f1")), timing["train_samples_per_second"],
            timing["train_seconds"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="db41a3e", help="the commit to compare with")
    parser.add_argument("--current", default=None, help="a commit to measure instead of the working tree")
    parser.add_argument("--rounds", type=int, default=2, help="runs from each tree")
    parser.add_argument("arguments", nargs="*", default=["recipe=sentiment"], help="the run's key=value arguments")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import machine_line

    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as work:
        work = Path(work)
        current = checkout(args.current, work / "current") if args.current else ROOT
        trees = {"baseline " + args.baseline: checkout(args.baseline, work / "baseline"),
                 "current" + (f" {args.current}" if args.current else ""): current}
        rows, rates = [], {name: [] for name in trees}
        try:
            for round_index in range(args.rounds):
                for name, tree in trees.items():
                    metrics = run_once(tree, args.arguments, work / f"run-{len(rows)}")
                    rows.append(row(f"{name} (round {round_index + 1})", metrics))
                    rates[name].append(metrics["timing"]["train_samples_per_second"])
                    print(" | ".join(str(cell) for cell in rows[-1]), flush=True)
        finally:
            for name in ("baseline", "current"):
                if (work / name).exists():
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / name)],
                                   capture_output=True)
    print(f"\n`python benchmarks/side_by_side.py --baseline {args.baseline}"
          f"{f' --current {args.current}' if args.current else ''} --rounds {args.rounds} -- "
          f"{' '.join(args.arguments)}`\n")
    print("| run | test accuracy | macro-F1 (NER: F1) | train samples/s | train seconds |")
    print("| --- | --- | --- | --- | --- |")
    for cells in rows:
        print("| " + " | ".join(f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells) + " |")
    baseline, current = (statistics.median(values) for values in rates.values())
    print(f"\nmedian training samples/s: current {current:.1f} vs baseline {baseline:.1f} "
          f"({100 * (current / baseline - 1):+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
