"""Interleaved A/B timings of the levers of the training and evaluation hot path.

    python benchmarks/levers.py                          # every lever, 4 rounds
    python benchmarks/levers.py --levers all_speedups,threads_1 --rounds 6

Every variant holds its own copy of the packaged MiniLM and trains on the same real tweet
batches (length-grouped, batch 32). Rounds interleave the variants, each on the same batches
in a round, so drift in the machine's load hits them alike; a variant's effect is the median
of its per-round time ratios to the baseline. The baseline step is what `engine/loop.train_epoch`
does per batch without the speed-ups of nlptransfer/engine/speed.py: collate with
`DataCollatorWithPadding`, forward, backward, clip, AdamW (fused, as `engine/loop.build_optimizer`
makes it), schedule, zero the gradients.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from statistics import median

import torch
from methods import MODEL, Slice, load_data
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, get_linear_schedule_with_warmup

from nlptransfer import catalog, models, tasks
from nlptransfer.engine import batches, speed
from nlptransfer.engine import loop as train
from nlptransfer.strategies.lora import LoraSettings, add_lora

Step = Callable[[list[dict]], None]


def pad_batch(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Dynamic padding in plain torch: what `DataCollatorWithPadding` does for these keys, minus its overhead."""
    longest = max(len(f["input_ids"]) for f in features)
    padded = {key: torch.full((len(features), longest), pad_id if key == "input_ids" else 0, dtype=torch.long)
              for key in features[0] if isinstance(features[0][key], list)}
    for row, feature in enumerate(features):
        for key, tensor in padded.items():
            tensor[row, :len(feature[key])] = torch.tensor(feature[key])
    return padded | {key: torch.tensor([f[key] for f in features])
                     for key in features[0] if not isinstance(features[0][key], list)}


def load_model(attention: str = "sdpa"):
    return AutoModelForSequenceClassification.from_pretrained(
        catalog.resolve_model(MODEL), num_labels=3, attn_implementation=attention)


def fast_dropout_only(model) -> None:
    speed.fast_dropout_modules(model)
    speed.fast_attention_dropout(model)


SPEEDUPS = {"first_token": speed.first_token_top, "fast_dropout": fast_dropout_only, "all": speed.speed_up}
"""The exact speed-ups of nlptransfer/engine/speed.py, alone and together."""


def training_step(tokenizer, attention: str = "sdpa", foreach: bool = False, lean_collate: bool = False,
                  compiled: bool = False, threads: int | None = None, bf16: bool = False,
                  speedups: str | None = None, lora: bool = False) -> Step:
    """One variant of the training step, on a fresh model and optimizer."""
    model = load_model(attention).train()
    if lora:  # the recipe's LoRA settings (r 8, alpha 16, dropout 0.1 on query and value)
        model = add_lora(model, LoraSettings(), "SEQ_CLS").train()
    if speedups:
        SPEEDUPS[speedups](model)
    optimizer = train.build_optimizer(model, 5e-5, 0.01)
    if foreach:
        optimizer = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]}
                                       for g in optimizer.param_groups], lr=5e-5, foreach=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, 10_000)
    hf_collate = DataCollatorWithPadding(tokenizer)
    forward = torch.compile(model, dynamic=True) if compiled else model

    def step(features: list[dict]) -> None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads or previous)
        batch = pad_batch(features, tokenizer.pad_token_id) if lean_collate else hf_collate(features)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = forward(**batches.model_inputs(batch)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        torch.set_num_threads(previous)

    return step


def evaluation_step(tokenizer, mode: Callable[[], object], first_token: bool = False) -> Step:
    """A forward pass for predictions under `mode` (torch.no_grad or torch.inference_mode)."""
    model = load_model().eval()
    if first_token:
        speed.first_token_top(model)
    collate = DataCollatorWithPadding(tokenizer)

    def step(features: list[dict]) -> None:
        inputs = {k: v for k, v in batches.model_inputs(collate(features)).items() if k != "labels"}
        with mode():
            model(**inputs).logits.argmax(-1)

    return step


def collation_step(collate: Callable[[list[dict]], object], repeats: int = 50) -> Step:
    def step(features: list[dict]) -> None:
        for _ in range(repeats):
            collate(features)

    return step


def levers(tokenizer) -> dict[str, tuple[str, Callable[[], Step]]]:
    """name -> (the baseline it is compared with, how to build its step)."""
    hf_collate, pad_id = DataCollatorWithPadding(tokenizer), tokenizer.pad_token_id
    return {
        "train_baseline": ("train_baseline", lambda: training_step(tokenizer)),
        "foreach_adamw": ("train_baseline", lambda: training_step(tokenizer, foreach=True)),
        "lean_collate": ("train_baseline", lambda: training_step(tokenizer, lean_collate=True)),
        "eager_attention": ("train_baseline", lambda: training_step(tokenizer, attention="eager")),
        "threads_1": ("train_baseline", lambda: training_step(tokenizer, threads=1)),
        "torch_compile": ("train_baseline", lambda: training_step(tokenizer, compiled=True)),
        "bf16_autocast": ("train_baseline", lambda: training_step(tokenizer, bf16=True)),
        "first_token_top": ("train_baseline", lambda: training_step(tokenizer, speedups="first_token")),
        "fast_dropout": ("train_baseline", lambda: training_step(tokenizer, speedups="fast_dropout")),
        "all_speedups": ("train_baseline", lambda: training_step(tokenizer, speedups="all")),
        "lora_step": ("all_speedups", lambda: training_step(tokenizer, speedups="all", lora=True)),
        "eval_no_grad": ("eval_no_grad", lambda: evaluation_step(tokenizer, torch.no_grad)),
        "eval_inference_mode": ("eval_no_grad", lambda: evaluation_step(tokenizer, torch.inference_mode)),
        "eval_first_token_top": ("eval_no_grad", lambda: evaluation_step(tokenizer, torch.no_grad, first_token=True)),
        "eval_both": ("eval_no_grad", lambda: evaluation_step(tokenizer, torch.inference_mode, first_token=True)),
        "collate_hf_x50": ("collate_hf_x50", lambda: collation_step(hf_collate)),
        "collate_lean_x50": ("collate_hf_x50", lambda: collation_step(lambda f: pad_batch(f, pad_id))),
    }


def padding_by_chunk(lengths: list[int], batch_size: int, seed: int) -> str:
    """Real-token share of length-grouped batches by chunk size (how many batches are sorted together)."""
    rows = []
    for chunk in (1, 10, 50, 100, 200, 1000):
        sampler = batches.LengthGroupedBatches(lengths, batch_size, seed, chunk_batches=chunk)
        sampler.set_epoch(1)
        padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in sampler)
        rows.append(f"| {chunk} | {sum(lengths) / padded:.1%} |")
    return "\n".join(["| chunk_batches | real tokens / padded tokens |", "|---|---|", *rows])


THREAD_SETTINGS = {
    "default": {},
    "omp_passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one_thread": {"OMP_NUM_THREADS": "1"},
}
"""Environment per thread setting; OpenMP reads it when torch loads, so each runs in a process of its own."""


def real_batches(args: argparse.Namespace, tokenizer, print_padding: bool) -> list[list[dict]]:
    """Length-grouped batches of real tweets: the rounds' batches, then two for the warm-up."""
    data = load_data(Slice(train=args.padding_slice, test=64, validation=64))
    encoded = batches.encode_split(data.train, tokenizer, 128)
    if print_padding:
        print(padding_by_chunk(encoded.lengths, args.batch_size, seed=42), "\n", flush=True)
    sampler = batches.LengthGroupedBatches(encoded.lengths, args.batch_size, seed=42)
    sampler.set_epoch(1)
    return [[encoded[i] for i in batch] for batch in sampler][:args.rounds * args.per_round + 2]


def seconds_per_step(step: Step, groups: list[list[dict]]) -> float:
    started = time.perf_counter()
    for features in groups:
        step(features)
    return (time.perf_counter() - started) / len(groups)


def fmt_seconds(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.1f}"


def print_table(times: dict[str, list[float]], baselines: dict[str, str], warmup: dict[str, float]) -> None:
    print("\n| lever | vs | median s/step | median ratio | ratio range | warm-up s |\n|---|---|---|---|---|---|")
    for name, measured in times.items():
        ratios = [t / b for t, b in zip(measured, times[baselines[name]])]
        print(f"| {name} | {baselines[name]} | {median(measured):.3f} | {median(ratios):.3f} "
              f"| {min(ratios):.3f}–{max(ratios):.3f} | {fmt_seconds(warmup.get(name))} |")


def in_process(args: argparse.Namespace) -> None:
    """Every chosen lever in this process, interleaved round by round."""
    tokenizer = models.load_tokenizer(MODEL)
    groups = real_batches(args, tokenizer, print_padding=True)
    available = levers(tokenizer)
    chosen = args.levers.split(",") if args.levers else list(available)
    chosen = list(dict.fromkeys([available[name][0] for name in chosen] + chosen))  # baselines first
    steps, warmup = {}, {}
    for name in chosen:
        steps[name] = available[name][1]()
        warmup[name] = seconds_per_step(steps[name], groups[-2:]) * 2  # includes compilation
        print(f"built {name}; warm-up {warmup[name]:.1f}s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in chosen}
    for index in range(args.rounds):
        for name in chosen:
            times[name].append(seconds_per_step(steps[name], groups[index * args.per_round:][:args.per_round]))
        print(f"round {index + 1}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in chosen), flush=True)
    print_table(times, {name: available[name][0] for name in chosen}, warmup)


def thread_settings(args: argparse.Namespace) -> None:
    """The baseline training step under each thread setting, a fresh process per round and setting."""
    times: dict[str, list[float]] = {name: [] for name in THREAD_SETTINGS}
    for index in range(args.rounds):
        for name, env in THREAD_SETTINGS.items():
            command = [sys.executable, __file__, "--step-child", str(index), "--rounds", str(args.rounds),
                       "--per-round", str(args.per_round), "--batch-size", str(args.batch_size),
                       "--padding-slice", str(args.padding_slice)]
            output = subprocess.run(command, env=os.environ | env, capture_output=True, text=True, check=True)
            times[name].append(float(output.stdout.split()[-1]))
        print(f"round {index + 1}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in times), flush=True)
    print_table(times, {name: "default" for name in times}, {})


def evaluation_batch_sizes(args: argparse.Namespace) -> None:
    """Prediction samples/s on the test slice in longest-first batches of each size, interleaved."""
    tokenizer = models.load_tokenizer(MODEL)
    test = batches.encode_split(load_data(Slice(train=64, test=args.eval_examples, validation=64)).test, tokenizer, 128)
    sizes = [int(size) for size in args.eval_batch_sizes.split(",")]
    step = evaluation_step(tokenizer, torch.inference_mode)
    groups = {size: [[test[i] for i in batch] for batch in batches.sorted_batches(test.lengths, size)]
              for size in sizes}
    times: dict[str, list[float]] = {f"eval_batch_{size}": [] for size in sizes}
    for index in range(args.rounds):
        for size in sizes:
            times[f"eval_batch_{size}"].append(seconds_per_step(step, groups[size]) * len(groups[size]) / len(test))
        print(f"round {index + 1}: " + ", ".join(f"{n} {1 / t[-1]:.1f} samples/s" for n, t in times.items()),
              flush=True)
    print_table(times, {name: f"eval_batch_{sizes[-1]}" for name in times}, {})
    print("(s/step here is seconds per example)")


def evaluation_vs_trainer(args: argparse.Namespace) -> None:
    """`Trainer.evaluate` against nlptransfer's test prediction on the same test slice, interleaved.

    Both hold the same model weights (the packaged MiniLM with one seeded head); each keeps its
    default evaluation batch size (Trainer 8, nlptransfer `train.eval_batch_size`).
    """
    from accelerate import Accelerator
    from methods import token_rows
    from transformers import Trainer, TrainingArguments

    from nlptransfer.config import TrainConfig

    data = load_data(Slice(train=64, test=args.eval_examples, validation=64))
    tokenizer = models.load_tokenizer(MODEL)
    torch.manual_seed(0)
    model = models.load_model(MODEL, tasks.get("classification"), data.label_names).eval()
    fast = models.load_model(MODEL, tasks.get("classification"), data.label_names)
    fast.load_state_dict(model.state_dict())
    speed.speed_up(fast)
    trainer = Trainer(model=model, processing_class=tokenizer,
                      args=TrainingArguments(output_dir=tempfile.mkdtemp(prefix="levers-trainer-"),
                                             report_to="none", disable_tqdm=True),
                      eval_dataset=token_rows(data.test.texts, data.test.labels, tokenizer, 128))
    test = batches.encode_split(data.test, tokenizer, 128)
    accelerator = Accelerator(cpu=True)

    def nlptransfer_predict() -> float:
        started = time.perf_counter()
        train.predict(fast, batches.eval_loader(test, tokenizer, TrainConfig().eval_batch_size), accelerator)
        return time.perf_counter() - started

    rates: dict[str, list[float]] = {"Trainer.evaluate": [], "nlptransfer predict": []}
    for index in range(args.rounds):
        rates["Trainer.evaluate"].append(len(test) / trainer.evaluate()["eval_runtime"])
        rates["nlptransfer predict"].append(len(test) / nlptransfer_predict())
        ratios = [ours / theirs for ours, theirs in zip(rates["nlptransfer predict"], rates["Trainer.evaluate"])]
        print(f"round {index + 1}: " + ", ".join(f"{n} {r[-1]:.1f} samples/s" for n, r in rates.items())
              + f", ratio {ratios[-1]:.2f}", flush=True)
    print(f"median samples/s: Trainer.evaluate {median(rates['Trainer.evaluate']):.1f}, nlptransfer "
          f"{median(rates['nlptransfer predict']):.1f}; median ratio {median(ratios):.2f} "
          f"(range {min(ratios):.2f}-{max(ratios):.2f})")


def step_child(args: argparse.Namespace) -> None:
    tokenizer = models.load_tokenizer(MODEL)
    groups = real_batches(args, tokenizer, print_padding=False)
    step = training_step(tokenizer)
    seconds_per_step(step, groups[-2:])
    print(seconds_per_step(step, groups[args.step_child * args.per_round:][:args.per_round]))


def main() -> None:
    from report import machine_line

    print(machine_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levers", default=None, help="comma-separated; default: all")
    parser.add_argument("--threads", action="store_true",
                        help="compare thread settings instead (default, OMP_WAIT_POLICY=PASSIVE, one thread)")
    parser.add_argument("--eval-batch-sizes", help="compare prediction batch sizes instead, e.g. 32,64,128")
    parser.add_argument("--eval-vs-trainer", action="store_true",
                        help="Trainer.evaluate vs nlptransfer's test prediction instead, interleaved")
    parser.add_argument("--eval-examples", type=int, default=512,
                        help="test examples for --eval-batch-sizes and --eval-vs-trainer")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=2, help="batches per variant per round")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--padding-slice", type=int, default=4000, help="training examples for the padding table")
    parser.add_argument("--step-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step_child is not None:
        step_child(args)
    elif args.eval_vs_trainer:
        evaluation_vs_trainer(args)
    elif args.eval_batch_sizes:
        evaluation_batch_sizes(args)
    elif args.threads:
        thread_settings(args)
    else:
        in_process(args)


if __name__ == "__main__":
    main()
