"""Multi-task learning against each task alone at the same budget (issue 24), on the packaged MiniLM.

One invocation trains task=multitask with the tweets' sentiment (packaged `data.name=tweets`, as recipe=sentiment
reads it) and WNUT-16 NER (`data.name=wnut16`, as recipe=ner) on one shared encoder, with
`multitask.compare_alone=true`: each task then trains alone with the same strategy, epochs, lr, seed, batch size
and data (alone/<task>/). It prints side by side: each task's test metric multi-task vs alone, the model folders'
size on disk (the multi-task run exports one standalone model per task, each holding the encoder) against the
single-task models' and the shared model's distinct weights, and the CPU time to predict every task for N tweets:
`load_model(run).predict` (MultitaskPredictor: each task's exported model runs its own encoder) against the two
single-task models one after the other. With the CPU's model and flags, torch's threads and the load average.

    python benchmarks/multitask.py                                   # the full benchmark (see README.md)
    python benchmarks/multitask.py --epochs 1 --train-samples 64 --validation-samples 32 --test-samples 32 \\
        --texts 32 --repeats 1 --output-dir /tmp/bench-multitask --results none   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_predict import machine  # noqa: E402  (the CPU's model and instruction flags)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs of every run (the ner recipe's 4)")
    parser.add_argument("--strategy", default="full", help="strategy of every run (full, lora, ia3, frozen, ...)")
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate of every run (both recipes' full: 1e-4)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=16, help="batch size of every run (the ner recipe's 16)")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per input (both recipes' 64)")
    parser.add_argument("--train-samples", type=int, default=4000,
                        help="at most this many training examples per task (the sentiment recipe's 4000; WNUT-16 "
                             "has about 1900 training sentences)")
    parser.add_argument("--validation-samples", type=int, default=1000, help="at most this many per task")
    parser.add_argument("--test-samples", type=int, default=None, help="at most this many per task (default: all)")
    parser.add_argument("--texts", type=int, default=500, help="tweets predicted for the timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each way to predict (the best kept)")
    parser.add_argument("--output-dir", default="runs/bench-multitask", help="the multi-task run's folder (replaced)")
    parser.add_argument("--results", default=str(Path(__file__).parent / "MULTITASK.md"),
                        help="the markdown report to write, or none")
    return parser.parse_args(argv)


def run_config(args: argparse.Namespace):
    from nlptransfer.config import RunConfig

    limits = {"max_train_samples": args.train_samples, "max_validation_samples": args.validation_samples,
              "max_test_samples": args.test_samples, "max_length": args.max_length}
    return RunConfig(
        recipe="bench-multitask", task="multitask", model="minilm", strategy=args.strategy, seed=args.seed,
        output_dir=args.output_dir, overwrite=True,
        multitask={"compare_alone": True, "tasks": [
            {"name": "sentiment", "task": "classification", "data": {"name": "tweets", **limits}},
            {"name": "ner", "task": "token-classification", "data": {"name": "wnut16", **limits}}]},
        train={"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "metric_for_best": "mean",
               "patience": None})


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def distinct_weight_bytes(model_dirs: list[Path]) -> int:
    """The bytes of the tensors of several model folders, a tensor present in several (the shared encoder) once."""
    from safetensors.torch import load_file

    seen: dict[str, object] = {}
    total = 0
    for folder in model_dirs:
        for key, tensor in load_file(str(folder / "model.safetensors")).items():
            if key in seen and seen[key].shape == tensor.shape and bool((seen[key] == tensor).all()):
                continue
            seen[key] = tensor
            total += tensor.numel() * tensor.element_size()
    return total


def best_seconds(predict, texts: list[str], repeats: int) -> float:
    predict(texts[:8])  # warm-up: first calls allocate
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(texts)
        times.append(time.perf_counter() - started)
    return min(times)


def prediction_times(run: Path, texts: list[str], repeats: int) -> dict:
    from nlptransfer import load_model

    multi = load_model(run)
    alone = {name: load_model(run / "alone" / name / "model") for name in ("sentiment", "ner")}
    return {"multitask_predictor": best_seconds(multi.predict, texts, repeats),
            "single_models": best_seconds(lambda batch: [model.predict(batch) for model in alone.values()], texts,
                                          repeats)}


def tweets(run: Path, count: int) -> list[str]:
    """`count` tweets of the sentiment task's test split (repeated if it has fewer)."""
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = [row["text"] for row in rows if row.get("task") == "sentiment"]
    return (texts * (count // len(texts) + 1))[:count]


def measure(args: argparse.Namespace) -> dict:
    import torch

    from nlptransfer.pipeline import run

    load_before = os.getloadavg()
    started = time.perf_counter()
    run(run_config(args))
    train_seconds = time.perf_counter() - started
    folder = Path(args.output_dir)
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    task_dirs = [folder / "model" / name for name in ("sentiment", "ner")]
    alone_dirs = [folder / "alone" / name / "model" for name in ("sentiment", "ner")]
    texts = tweets(folder, args.texts)
    return {
        "options": vars(args), "machine": machine() | {"torch_threads": torch.get_num_threads()},
        "alone": metrics["alone"], "wall_seconds_all_runs": train_seconds,
        "sizes": {"multitask_model_folders": folder_bytes(folder / "model"),
                  "multitask_distinct_weights": distinct_weight_bytes(task_dirs),
                  "single_model_folders": sum(folder_bytes(path) for path in alone_dirs),
                  "single_weights": sum(distinct_weight_bytes([path]) for path in alone_dirs)},
        "predict_seconds": prediction_times(folder, texts, args.repeats), "texts": len(texts),
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }


def report(result: dict) -> str:
    mb = 1024 ** 2
    machine_info, sizes, seconds = result["machine"], result["sizes"], result["predict_seconds"]
    lines = ["| task | metric | multi-task | alone | difference |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {e['metric']} | {e['multitask']:.4f} | {e['alone']:.4f} | {e['difference']:+.4f} |"
              for name, e in result["alone"].items()]
    lines += ["", "| on disk | MB |", "|---|---|",
              f"| multi-task run: model/<task>/ folders (each a standalone model with the encoder) | "
              f"{sizes['multitask_model_folders'] / mb:.1f} |",
              f"| multi-task: distinct weights (the shared encoder once + each head) | "
              f"{sizes['multitask_distinct_weights'] / mb:.1f} |",
              f"| single-task runs: both model/ folders | {sizes['single_model_folders'] / mb:.1f} |",
              f"| single-task runs: both models' weights | {sizes['single_weights'] / mb:.1f} |",
              "", f"| predict both tasks for {result['texts']} tweets (CPU, best of {result['options']['repeats']}) "
                  "| seconds | texts/s |", "|---|---|---|"]
    for label, key in (("load_model(run).predict (MultitaskPredictor: each task's model runs its encoder)",
                        "multitask_predictor"), ("the two single-task models, one after the other", "single_models")):
        lines.append(f"| {label} | {seconds[key]:.2f} | {result['texts'] / seconds[key]:.1f} |")
    lines += ["", f"CPU: {machine_info['cpu']} ({machine_info['cores']} cores, torch threads "
                  f"{machine_info['torch_threads']}; int8 flags: {', '.join(machine_info['int8_instructions'])}; bf16 "
                  f"flags: {', '.join(machine_info['bf16_instructions']) or 'none'}); torch {machine_info['torch']}; "
                  f"load average before {result['load_average']['before'][0]:.2f}, after "
                  f"{result['load_average']['after'][0]:.2f}; all runs {result['wall_seconds_all_runs']:.0f} s."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from nlptransfer.errors import NlpTransferError

    args = parse_args(argv)
    try:
        result = measure(args)
    except NlpTransferError as error:  # e.g. too few training sentences to hold every entity type
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = report(result)
    print(text)
    if args.results != "none":
        command = "python benchmarks/multitask.py " + " ".join(argv if argv is not None else sys.argv[1:])
        Path(args.results).write_text(f"# Multi-task against each task alone\n\n`{command.strip()}`\n\n{text}\n\n"
                                      f"```json\n{json.dumps(result, indent=1)}\n```\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
