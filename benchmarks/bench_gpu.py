"""nlptransfer's training loop against transformers.Trainer on one GPU: BERT-base, bf16, seq len 128.

    python benchmarks/bench_gpu.py                  # BERT-base, batch 128, 200 measured steps
    python benchmarks/bench_gpu.py --tiny --steps 4 --warmup 2 --repeats 1 --results none   # a CPU smoke test

The model is a randomly initialized BertForSequenceClassification of BERT-base size (no hub
access needed) and the data synthetic: random token ids, every sequence `--seq-len` real
tokens. Both tools get the same model size, data, batch size, learning rate, bf16 autocast and
collator (`DataCollatorWithPadding` with a generated WordPiece tokenizer). After a warm-up run
each, the measured runs alternate (nlptransfer, Trainer, nlptransfer, ...) and the best of each
is reported, with MFU against the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import gc
import json
import shlex
from pathlib import Path

import torch
from report import publish
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

HERE = Path(__file__).resolve().parent
DENSE_BF16_TFLOPS = (  # the first name found in torch.cuda.get_device_name() wins: specific before general
    ("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989), ("H200", 989), ("GH200", 989), ("B200", 2250),
    ("A100", 312), ("L40S", 362), ("L40", 181), ("L4", 121), ("A10G", 70), ("A10", 125), ("RTX 4090", 165),
    ("RTX 3090", 71), ("V100", 125),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="measured optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=20, help="optimizer steps of each tool's warm-up run")
    parser.add_argument("--repeats", type=int, default=2, help="measured runs per tool (alternating)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak; default: looked up by name")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model; runs on CPU too (smoke test)")
    parser.add_argument("--results", default=str(HERE / "RESULTS_GPU.md"), help="report file ('none': print only)")
    return parser.parse_args(argv)


def model_config(tiny: bool, seq_len: int) -> BertConfig:
    sizes = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if tiny else {}
    return BertConfig(max_position_embeddings=max(512, seq_len), num_labels=2, **sizes)  # BERT-base by default


def synthetic_tokenizer(vocab_size: int) -> BertTokenizer:
    """A WordPiece tokenizer over made-up tokens: what the collator needs (pad id, padding side)."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"t{i}" for i in range(vocab_size - 5)]
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})


def synthetic_rows(count: int, seq_len: int, vocab_size: int, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (count, seq_len), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    labels = torch.randint(0, 2, (count,), generator=generator).tolist()
    return [{"input_ids": row, "attention_mask": [1] * seq_len, "labels": label}
            for row, label in zip(ids.tolist(), labels)]


def flops_per_token(config: BertConfig, seq_len: int) -> float:
    """Training FLOPs per real token: 6 * encoder-layer parameters + 12 * layers * hidden * seq_len (attention)."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    layer_parameters = 4 * (d * d + d) + 2 * d * ff + ff + d + 4 * d
    return layers * (6 * layer_parameters + 12 * d * seq_len)


def run_nlptransfer(config: BertConfig, tokenizer, rows: list[dict], args, steps: int) -> dict:
    """`nlptransfer.engine.loop.fit` over `batches.train_loader`, as strategy=full runs it."""
    from accelerate import Accelerator

    from nlptransfer.engine import batches
    from nlptransfer.engine.loop import OptimizerSettings, TrainData, fit
    from nlptransfer.engine.speed import speed_up
    from nlptransfer.options import TrainConfig

    accelerator = Accelerator(mixed_precision="bf16")
    split = batches.EncodedSplit([row | {"example_index": i} for i, row in enumerate(rows[:steps * args.batch_size])])
    loader = batches.train_loader(split, tokenizer, args.batch_size, seed=0, group_by_length=True)
    cfg = TrainConfig(epochs=1, max_steps=steps, batch_size=args.batch_size, lr=args.lr, patience=None,
                      mixed_precision="bf16")
    model = BertForSequenceClassification(config)
    speed_up(model)  # as pipeline.build_model does (train.speedups=true)
    result = fit(model, TrainData(loader, lambda _: {"accuracy": 0.0}), cfg, OptimizerSettings(args.lr), accelerator)
    return {"seconds": result.train_seconds, "steps": result.optimizer_steps, "samples": result.train_examples}


def run_trainer(config: BertConfig, tokenizer, rows: list[dict], args, steps: int, workdir: str) -> dict:
    """`transformers.Trainer` with its defaults, bf16, no checkpoint saving."""
    from transformers import Trainer, TrainingArguments

    training_args = TrainingArguments(output_dir=workdir, per_device_train_batch_size=args.batch_size,
                                      learning_rate=args.lr, max_steps=steps, bf16=True, save_strategy="no",
                                      report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=BertForSequenceClassification(config), args=training_args,
                      train_dataset=rows[:steps * args.batch_size], processing_class=tokenizer)
    metrics = trainer.train().metrics
    return {"seconds": metrics["train_runtime"], "steps": trainer.state.global_step,
            "samples": trainer.state.global_step * args.batch_size}


def measured(tool, steps: int, device_stats: bool) -> dict:
    """Run a tool once for `steps` steps; add peak GPU memory; free what it left."""
    if device_stats:
        torch.cuda.reset_peak_memory_stats()
    result = tool(steps)
    if device_stats:
        result["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
    gc.collect()
    if device_stats:
        torch.cuda.empty_cache()
    return result


def bf16_matmul_tflops(size: int = 8192, repeats: int = 10) -> float | None:
    """The best achieved dense bf16 matmul TFLOP/s (a reference beside the data-sheet peak)."""
    if not torch.cuda.is_available():
        return None
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.mm(a, b)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1000)
    return 2 * size ** 3 / best / 1e12


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((tflops for key, tflops in DENSE_BF16_TFLOPS if key in name), None)


def report(results: dict[str, list[dict]], args, config: BertConfig, device: str, peak: float | None,
           achieved: float | None) -> str:
    per_token = flops_per_token(config, args.seq_len)
    lines = ["# nlptransfer vs transformers.Trainer on GPU", "",
             f"`{shlex.join(['python', 'benchmarks/bench_gpu.py', *args.argv])}`", "",
             f"- device: {device}; dense bf16 peak {peak or '–'} TFLOP/s; measured bf16 8192² matmul "
             f"{f'{achieved:.0f}' if achieved else '–'} TFLOP/s",
             f"- model: random BertForSequenceClassification, {config.num_hidden_layers} layers, hidden "
             f"{config.hidden_size}; synthetic data, every sequence {args.seq_len} real tokens; bf16 autocast",
             f"- batch {args.batch_size}, lr {args.lr:g}, {args.steps} measured steps after {args.warmup} warm-up "
             f"steps, best of {args.repeats} alternating runs per tool",
             f"- FLOPs per token (training): {per_token / 1e6:.0f} M (6 × layer parameters + 12 × layers × hidden "
             "× seq len)", "",
             "| tool | samples/s | tokens/s | × Trainer | MFU | peak GPU memory GB |", "|---|---|---|---|---|---|"]
    best = {tool: max(runs, key=lambda r: r["samples"] / r["seconds"]) for tool, runs in results.items()}
    base = best["trainer"]["samples"] / best["trainer"]["seconds"]
    for tool, run in best.items():
        samples = run["samples"] / run["seconds"]
        tokens = samples * args.seq_len
        mfu = f"{tokens * per_token / (peak * 1e12):.1%}" if peak else "–"
        lines.append(f"| {tool} | {samples:.0f} | {tokens:.0f} | {samples / base:.2f}× | {mfu} "
                     f"| {run.get('peak_gpu_memory_gb', float('nan')):.1f} |")
    lines += ["", "```json", json.dumps(results, indent=1), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import sys
    import tempfile

    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.tiny:
        raise SystemExit("no CUDA GPU found; run on a GPU machine, or pass --tiny for a CPU smoke test")
    config = model_config(args.tiny, args.seq_len)
    tokenizer = synthetic_tokenizer(config.vocab_size)
    rows = synthetic_rows(max(args.steps, args.warmup) * args.batch_size, args.seq_len, config.vocab_size, seed=0)
    device = torch.cuda.get_device_name() if on_gpu else "CPU (smoke test)"
    with tempfile.TemporaryDirectory() as workdir:
        tools = {
            "nlptransfer": lambda steps: run_nlptransfer(config, tokenizer, rows, args, steps),
            "trainer": lambda steps: run_trainer(config, tokenizer, rows, args, steps, workdir),
        }
        for name, tool in tools.items():
            print(f"{name}: warm-up", flush=True)
            measured(tool, args.warmup, on_gpu)
        results: dict[str, list[dict]] = {name: [] for name in tools}
        for repeat in range(args.repeats):
            for name, tool in tools.items():
                results[name].append(measured(tool, args.steps, on_gpu))
                print(f"{name} run {repeat + 1}: {results[name][-1]}", flush=True)
    publish(report(results, args, config, device, peak_tflops(device, args.peak_tflops), bf16_matmul_tflops()),
            args.results)


if __name__ == "__main__":
    main()
