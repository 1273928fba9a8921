"""nlptransfer (full, frozen, lora) against transformers.Trainer on the same data, side by side.

    python benchmarks/bench.py                      # 4000 train / 2000 test tweets, 1 epoch
    python benchmarks/bench.py --train 256 --test 128 --results none   # a quick check
    python benchmarks/bench.py --methods trainer_grouped,full --seeds 4 --seed 0   # issue 26's goal, on an AMX CPU

Each method runs in a process of its own (so its peak RSS is its own), on the same seeded
slice of the packaged tweets with the packaged MiniLM, batch 32, lr 5e-5 and the same number
of optimizer steps, in the precision `--precision` resolves to (auto, the default: bf16 on a CPU with AMX or
AVX-512 BF16, where the Trainer gets bf16=True too; fp32 elsewhere). The machine's matmul FLOP/s in that precision
is measured before and after. The table
is printed and written to benchmarks/RESULTS.md together with the command and the machine. `--seeds N` runs every
method with N seeds (each its own data slice and initialization) in the same invocation and adds their means and
spread, and issue 26's goal judged on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from methods import Slice, methods
from report import machine, publish, render, render_seeds

HERE = Path(__file__).resolve().parent
DEFAULT_METHODS = ("trainer", "trainer_grouped", "full", "lora", "frozen", "frozen_rerun")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Slice()
    for field in dataclasses.fields(Slice):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(defaults, field.name)),
                            default=getattr(defaults, field.name), help=f"default {getattr(defaults, field.name)}")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, from: {', '.join(DEFAULT_METHODS)}")
    parser.add_argument("--seeds", type=int, default=1,
                        help="run every method with seeds --seed .. --seed + N - 1 and report their means (1)")
    parser.add_argument("--own-lr", action="store_true",
                        help="frozen and lora use nlptransfer's default learning rates instead of --lr")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"),
                        help="where to write the report ('none': print only)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.methods.split(",")) - set(DEFAULT_METHODS)
    if unknown:
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")
    if args.seeds < 1:
        parser.error(f"--seeds must be 1 or more; got {args.seeds}")
    return args


def slice_of(args: argparse.Namespace) -> Slice:
    return Slice(**{field.name: getattr(args, field.name) for field in dataclasses.fields(Slice)})


def child_argv(args: argparse.Namespace) -> list[str]:
    """The options a child needs: the slice and the learning-rate choice."""
    options = [f"--{field.name.replace('_', '-')}={getattr(args, field.name)}" for field in dataclasses.fields(Slice)]
    return options + (["--own-lr"] if args.own_lr else [])


def child_main(args: argparse.Namespace) -> None:
    """Run one method in this process and write its measurements as JSON."""
    measured = methods(slice_of(args), Path(args.workdir), args.own_lr)[args.child]()
    Path(args.result_file).write_text(json.dumps(measured, indent=1))


def run_child(method: str, argv: list[str], workdir: Path, script: Path = HERE / "bench.py") -> dict:
    """One method in a fresh process (`script --child METHOD`, writing its JSON to `--result-file`); adds its
    peak RSS (from wait4) and its wall time."""
    result_file, log_file = workdir / f"{method}.json", workdir / f"{method}.log"
    command = [sys.executable, str(script), *argv, "--child", method,
               "--workdir", str(workdir), "--result-file", str(result_file)]
    env = os.environ | {"NLPTRANSFER_CACHE": str(workdir / "feature-cache"), "TOKENIZERS_PARALLELISM": "false",
                        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    with open(log_file, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0 or not result_file.is_file():
        tail = log_file.read_text(errors="replace").splitlines()[-15:]
        print(f"  {method} failed (exit {process.returncode}):\n    " + "\n    ".join(tail), file=sys.stderr)
        return {"failed": f"exit {process.returncode}: {tail[-1] if tail else ''}"}
    measured = json.loads(result_file.read_text())
    return measured | {"process_seconds": seconds, "peak_rss_bytes": usage.ru_maxrss * 1024}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    started, load_before = time.perf_counter(), os.getloadavg()
    chosen = args.methods.split(",")
    seeds = [args.seed + offset for offset in range(args.seeds)]
    runs: dict[int, dict[str, dict]] = {}

    def step(name: str, argv_of_seed: list[str], workdir: Path) -> dict:
        print(f"[{time.perf_counter() - started:6.0f}s] {name} ...", flush=True)
        workdir.mkdir(exist_ok=True)
        return run_child(name.removesuffix("_after"), argv_of_seed, workdir)

    with tempfile.TemporaryDirectory(prefix="nlptransfer-bench-") as folder:
        before = step("matmul", child_argv(args), Path(folder))
        for seed in seeds:  # a folder each: a seed's frozen run must not find another seed's cached features
            passed_on = child_argv(argparse.Namespace(**vars(args) | {"seed": seed}))
            workdir = Path(folder) / f"seed-{seed}" if len(seeds) > 1 else Path(folder)
            runs[seed] = {"matmul": before} | {name: step(name, passed_on, workdir) for name in ["workload", *chosen]}
        after = step("matmul_after", child_argv(args), Path(folder))
    for measured in runs.values():
        measured["matmul_after"] = after
    host = machine() | {"load_before": load_before, "load_after": os.getloadavg(),
                        "total_seconds": time.perf_counter() - started}
    command = shlex.join(["python", "benchmarks/bench.py", *argv])
    spec = slice_of(args)
    text = (render(runs[seeds[0]], chosen, spec, host, command) if len(seeds) == 1
            else render_seeds(runs, chosen, spec, host, command))
    publish(text, args.results)


if __name__ == "__main__":
    main()
