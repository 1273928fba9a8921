"""Turn the raw measurements of `bench.py` into throughput, FLOP/s, ratios and a Markdown report.

Every number in the report is computed from a measurement of the same invocation; a method
that failed or a figure that was not measured shows as a dash.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from statistics import mean, stdev

from methods import Slice

BASELINE = "trainer"
LABELS = {
    "trainer": "Trainer, defaults",
    "trainer_grouped": "Trainer, group_by_length",
    "full": "nlptransfer full",
    "lora": "nlptransfer lora",
    "frozen": "nlptransfer frozen",
    "frozen_rerun": "nlptransfer frozen, 2nd run",
}
PASS_MULTIPLIER = {"full": 6, "trainer": 6, "trainer_grouped": 6, "lora": 4, "frozen": 2, "frozen_rerun": 2}
"""FLOPs per parameter and real token: forward 2, backward 4 (2 for activations, 2 for weights);
lora computes no weight gradients of the frozen matrices; frozen only runs the encoder forward."""
GB = 1e9


def machine() -> dict:
    import accelerate
    import peft
    import torch
    import transformers

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from nlptransfer.engine import precision

    flags = precision.cpu_flags()
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
            "bf16_flags": [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags],
            "avx512": "avx512f" in flags,
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__, "peft": peft.__version__,
            "date": datetime.now().astimezone().isoformat(timespec="minutes")}


def cpu_description(host: dict) -> str:
    """'AMD EPYC (2 cores, 2 torch threads; bf16 flags: none; AVX-512: no)' from `machine()`'s facts."""
    return (f"{host['cpu']} ({host['cores']} cores, {host['torch_threads']} torch threads; bf16 flags: "
            f"{', '.join(host['bf16_flags']) or 'none'}; AVX-512: {'yes' if host['avx512'] else 'no'})")


def machine_line(host: dict | None = None) -> str:
    """One line naming the CPU and its bf16/AVX-512 flags, printed beside a benchmark's figures."""
    return "machine: " + cpu_description(host or machine())


def training_flops(name: str, measured: dict, work: dict, epochs: int) -> float | None:
    """Useful FLOPs: multiplier * (layer params * real tokens + 2 * layers * hidden * sum(length^2))."""
    per_pass = (work["layer_parameters"] * work["train_tokens"]
                + 2 * work["layers"] * work["hidden_size"] * work["train_token_squares"])
    if name.startswith("frozen"):  # the encoder runs once, if at all (a cache hit skips it)
        return 2 * per_pass if extract_train_seconds(measured, work) else None
    return PASS_MULTIPLIER[name] * per_pass * epochs


def extract_train_seconds(measured: dict, work: dict) -> float:
    rows = zip(measured.get("extract_seconds", []), measured.get("extract_rows", []))
    return sum(seconds for seconds, count in rows if count == work["train_examples"])


def derive(name: str, measured: dict, work: dict, spec: Slice, peak: float | None) -> dict:
    """Throughput and FLOP/s of one method; frozen's training time includes its one-off feature extraction."""
    seconds = measured["train_seconds"] + extract_train_seconds(measured, work)
    flops = training_flops(name, measured, work, spec.epochs)
    steps = measured["optimizer_steps"]
    return {
        "seconds": seconds,
        "samples_per_s": work["train_examples"] * spec.epochs / seconds,
        "tokens_per_s": work["train_tokens"] * spec.epochs / seconds,
        "flops_per_s": flops / seconds if flops else None,
        "peak_share": flops / seconds / peak if flops and peak else None,
        "step_seconds": measured["train_seconds"] / steps if steps else None,
        "epoch_seconds": mean(measured["epoch_seconds"]),
        "eval_per_s": measured["eval_examples"] / measured["eval_seconds"],
    }


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def tables(rows: dict[str, dict], measured: dict[str, dict]) -> list[str]:
    base, base_measured = rows.get(BASELINE, {}), measured.get(BASELINE, {})
    lines = ["## Training", "",
             "| method | lr | steps | train s | samples/s | × Trainer | tokens/s | × Trainer | GFLOP/s "
             "| of matmul peak | s/step | epoch s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        m = measured[name]
        lines.append(
            f"| {LABELS[name]} | {m['lr']:g} | {m['optimizer_steps']} | {row['seconds']:.1f} "
            f"| {row['samples_per_s']:.1f} | {fmt(ratio(row['samples_per_s'], base.get('samples_per_s')), '.2f', '×')} "
            f"| {row['tokens_per_s']:.0f} | {fmt(ratio(row['tokens_per_s'], base.get('tokens_per_s')), '.2f', '×')} "
            f"| {fmt(row['flops_per_s'] and row['flops_per_s'] / 1e9)} | {fmt(row['peak_share'], '.0%')} "
            f"| {fmt(row['step_seconds'], '.3f')} | {row['epoch_seconds']:.1f} |")
    lines += ["", "## Accuracy, evaluation and resources", "",
              "| method | test accuracy | Δ vs Trainer (points) | eval samples/s | × Trainer | peak RSS GB "
              "| × Trainer | process wall s | × Trainer |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        m = measured[name]
        delta = 100 * (m["accuracy"] - base_measured["accuracy"]) if base_measured else None
        versus = {key: fmt(ratio(m[key], base_measured.get(key)), ".2f", "×")
                  for key in ("peak_rss_bytes", "process_seconds")}
        lines.append(
            f"| {LABELS[name]} | {m['accuracy']:.4f} | {fmt(delta, '+.2f')} | {row['eval_per_s']:.1f} "
            f"| {fmt(ratio(row['eval_per_s'], base.get('eval_per_s')), '.2f', '×')} "
            f"| {m['peak_rss_bytes'] / GB:.2f} | {versus['peak_rss_bytes']} "
            f"| {m['process_seconds']:.0f} | {versus['process_seconds']} |")
    return lines


def targets(rows: dict[str, dict], measured: dict[str, dict], work: dict) -> list[str]:
    """The issue's targets, each checked against this run's figures (only those whose methods ran)."""
    checks = []

    def check(names: tuple[str, ...], text: str, test) -> None:
        if all(n in rows for n in names):
            ok, figure = test(*(rows[n] for n in names))
            checks.append(f"- [{'x' if ok else ' '}] {text}: {figure}")

    samples = "samples_per_s"
    check(("full", "trainer"), "full ≥ 1.5× Trainer default training samples/s",
          lambda f, t: (f[samples] >= 1.5 * t[samples], f"{f[samples] / t[samples]:.2f}×"))
    check(("full", "trainer_grouped"), "full ≥ 1.25× Trainer group_by_length training samples/s",
          lambda f, t: (f[samples] >= 1.25 * t[samples], f"{f[samples] / t[samples]:.2f}×"))
    best_trainer = max((measured[n]["accuracy"] for n in ("trainer", "trainer_grouped") if n in rows), default=None)
    if "full" in rows and best_trainer is not None:
        gap = 100 * (measured["full"]["accuracy"] - best_trainer)
        checks.append(f"- [{'x' if gap >= -0.5 else ' '}] full test accuracy within 0.5 points of the best "
                      f"Trainer or better: {gap:+.2f} points")
    check(("full",), "full useful training FLOP/s ≥ half the matmul peak (aim)",
          lambda f: (bool(f["peak_share"]) and f["peak_share"] >= 0.5, fmt(f["peak_share"], ".0%")))
    check(("frozen", "full"), "frozen: an epoch after the first ≥ 20× faster than a full epoch",
          lambda z, f: (f["epoch_seconds"] >= 20 * z["epoch_seconds"],
                        f"{f['epoch_seconds'] / z['epoch_seconds']:.0f}×"))
    if "frozen_rerun" in rows:
        extracted = extract_train_seconds(measured["frozen_rerun"], work)
        outcome = f"{extracted:.1f}s extracting again" if extracted else "no encoder pass over the training split"
        checks.append(f"- [{' ' if extracted else 'x'}] a second frozen run reuses the disk cache: {outcome}")
    check(("lora", "full"), "lora ≥ 1.3× faster per step than full",
          lambda lo, f: (f["step_seconds"] >= 1.3 * lo["step_seconds"],
                         f"{f['step_seconds'] / lo['step_seconds']:.2f}×"))
    if "full" in rows:
        rss = measured["full"]["peak_rss_bytes"] / GB
        checks.append(f"- [{'x' if rss <= 2.0 else ' '}] full peak RSS ≤ 2.0 GB: {rss:.2f} GB")
    check(("full", "trainer"), "evaluation ≥ 2× Trainer.evaluate samples/s",
          lambda f, t: (f["eval_per_s"] >= 2 * t["eval_per_s"], f"{f['eval_per_s'] / t['eval_per_s']:.2f}×"))
    return checks


NOTES = """\
## How it was measured

- Each method runs in its own process; peak RSS is that process's `ru_maxrss` (from `os.wait4`),
  process wall time includes Python start-up, imports, data loading, evaluation and saving.
- **train s**: the training epochs only. nlptransfer: the sum of `history[*].train_seconds`
  (validation after each epoch excluded); frozen adds its one-off encoder pass over the training
  split (timed around `features.extract`), its later epochs train only the head. Trainer:
  `train_runtime` (with its default end-of-training checkpoint save).
- **tokens/s**: real (non-padding) tokens of the training split, counted from the tokenized slice,
  times epochs, over train s. All methods see the same tokens.
- **GFLOP/s** (useful, real tokens only): `k * (P * T + 2 * L * d * S) / train s`, where P are the
  parameters of the encoder layers (no embeddings, pooler or head), T the real tokens, L the
  layers, d the hidden size, S the sum of squared sequence lengths (attention scores and
  weighted sums). k = 6 for full fine-tuning (forward 2, backward 4), 4 for lora (no weight
  gradients of the frozen matrices), 2 for frozen (one encoder forward; the head is negligible).
  These are the model's FLOPs, the work a plain implementation does (as in MFU). nlptransfer's
  exact speed-ups (`nlptransfer/engine/speed.py`) skip part of it: the top layer runs its query,
  attention output and feed-forward block for the first token only, since the classification
  head reads nothing else; so for full, lora and frozen the figure is model FLOPs per second,
  above the FLOP/s its kernels execute.
- **matmul peak**: the best of 7 timings of a 2048×2048 fp32 `torch.mm`, before and after the
  methods; the larger is the peak.
- **eval samples/s**: nlptransfer: the test prediction inside `pipeline.run` (timed around
  `pipeline.predict`); Trainer: `Trainer.evaluate` on the test split (`eval_runtime`), each with
  its default evaluation batch size.
- **frozen, 2nd run**: the same run again with the same feature cache folder; when the disk cache
  hits, no encoder pass runs, its train s is the head alone and no FLOP/s are shown.
- Hyperparameters other than batch size, learning rate and epochs are each tool's defaults
  (nlptransfer: 6% warmup, weight decay 0.01; Trainer: no warmup, no weight decay; both clip
  gradients at 1.0).
"""


def publish(text: str, results: str) -> None:
    """Print the report and write it to `results` (unless that is 'none')."""
    print(text)
    if results.lower() != "none":
        Path(results).write_text(text)
        print(f"written to {results}")


def render(measured: dict[str, dict], chosen: list[str], spec: Slice, host: dict, command: str) -> str:
    """The Markdown report: command, machine, tables, targets, notes and the raw measurements."""
    lines, rows, ran = header(measured, chosen, spec, host, command)
    work = measured.get("workload", {})
    lines += tables(rows, ran) + [""]
    lines += ["## Targets (issue 6)", ""] + targets(rows, ran, work) + [""]
    failed = [f"- {name}: {measured[name]['failed']}" for name in measured if "failed" in measured[name]]
    return "\n".join(lines + closing(failed, measured))


def closing(failed: list[str], raw: dict) -> list[str]:
    """The report's end: the failed methods (if any), how it was measured, the raw measurements."""
    return ((["## Failed", ""] + failed + [""] if failed else [])
            + [NOTES, "<details><summary>raw measurements</summary>", "", "```json", json.dumps(raw, indent=1), "```",
               "</details>", ""])


def matmul_peaks(measured: dict[str, dict]) -> list[float]:
    """The matmul FLOP/s measured before and after the methods (those that did not fail); the larger is the peak."""
    return [measured[k]["flops"] for k in ("matmul", "matmul_after") if "flops" in measured.get(k, {})]


def derived_rows(measured: dict[str, dict], chosen: list[str], spec: Slice) -> tuple[dict, dict]:
    """(derived figures, measurements) of the methods of one invocation (or seed) that did not fail."""
    work = measured.get("workload", {})
    ran = {name: measured[name] for name in chosen if "failed" not in measured[name]}
    rows = {name: derive(name, m, work, spec, max(matmul_peaks(measured), default=None)) for name, m in ran.items()} \
        if "failed" not in work else {}
    return rows, ran


def header(measured: dict[str, dict], chosen: list[str], spec: Slice, host: dict, command: str,
           seeds: dict[int, dict] | None = None) -> tuple[list[str], dict, dict]:
    """The report's title, command and machine lines, with the derived rows and measurements they summarize
    (`seeds`: every seed's workload, whose real training tokens differ)."""
    work = measured.get("workload", {})
    peaks = matmul_peaks(measured)
    peak = max(peaks, default=None)
    rows, ran = derived_rows(measured, chosen, spec)
    seed_text = f"seeds {', '.join(map(str, seeds))}" if seeds else f"seed {spec.seed}"
    tokens = (", ".join(str(each.get("train_tokens", "–")) for each in seeds.values()) if seeds
              else work.get("train_tokens", "–"))
    lines = ["# nlptransfer vs transformers.Trainer: fine-tuning speed", "", f"`{command}`", "",
             f"- date: {host['date']}", f"- machine: {host['cpu']}, {host['cores']} cores "
             f"(torch threads {host['torch_threads']}); load average before {host['load_before'][0]:.2f}, "
             f"after {host['load_after'][0]:.2f}",
             f"- software: Python {host['python']}, torch {host['torch']}, transformers {host['transformers']}, "
             f"accelerate {host['accelerate']}, peft {host['peft']}",
             f"- data: packaged tweets, {seed_text}: {work.get('train_examples', '–')} train / "
             f"{work.get('validation_examples', '–')} validation / {work.get('test_examples', '–')} test, "
             f"{tokens} real training tokens; max length {spec.max_length}; "
             f"model: {'packaged all-MiniLM-L6-v2' if spec.model == 'minilm' else spec.model} "
             f"({work.get('total_parameters', '–')} parameters)",
             f"- training: {spec.epochs} epoch(s), batch {spec.batch_size}, lr {spec.lr:g}",
             f"- CPU bf16 flags: {', '.join(host.get('bf16_flags', [])) or 'none'}; AVX-512: "
             f"{'yes' if host.get('avx512') else 'no'}; precision {spec.precision} (nlptransfer runs: "
             f"{', '.join(sorted({m.get('mixed_precision', '?') for m in ran.values() if 'train_seconds' in m}))})",
             f"- {measured.get('matmul', {}).get('dtype', 'float32')} matmul peak: {fmt(peak and peak / 1e9)} GFLOP/s "
             f"({', '.join(f'{p / 1e9:.1f}' for p in peaks)} before/after)",
             f"- benchmark wall time: {host['total_seconds'] / 60:.1f} min", ""]
    return lines, rows, ran


AMX_SPEEDUP, AMX_PEAK_SHARE = 1.5, 0.30
"""Issue 26's goal on an AMX CPU: the default run (bf16 by `auto`) at least 1.5x the Trainer's fastest setting (bf16,
group_by_length) in training samples/s, at equal test accuracy (within the seeds' spread), and at least 30% of the
bf16 matmul peak measured in the same invocation."""


def spread(values: list[float]) -> float:
    return stdev(values) if len(values) > 1 else 0.0


def render_seeds(runs: dict[int, dict[str, dict]], chosen: list[str], spec: Slice, host: dict, command: str) -> str:
    """The report of one invocation over several seeds: each method's figures per seed, their mean and spread, issue
    26's goal judged on the means; then each seed's own tables and the raw measurements."""
    seeds = list(runs)
    lines, _, _ = header(runs[seeds[0]], chosen, spec, host, command,
                         {seed: runs[seed].get("workload", {}) for seed in seeds})
    derived = {seed: derived_rows(runs[seed], chosen, replace(spec, seed=seed)) for seed in seeds}
    summary = {}
    lines += ["## Across seeds", "", "| method | samples/s per seed | mean ± sd | test accuracy per seed | mean ± sd "
              "| of matmul peak (mean) |", "|---|---|---|---|---|---|"]
    for name in chosen:
        done = [seed for seed in seeds if name in derived[seed][0]]
        if not done:
            continue
        speed = [derived[seed][0][name]["samples_per_s"] for seed in done]
        accuracy = [derived[seed][1][name]["accuracy"] for seed in done]
        shares = [derived[seed][0][name]["peak_share"] for seed in done if derived[seed][0][name]["peak_share"]]
        summary[name] = {"speed": speed, "accuracy": accuracy, "share": mean(shares) if shares else None}
        lines.append(f"| {LABELS[name]} | {', '.join(f'{v:.1f}' for v in speed)} | {mean(speed):.1f} ± "
                     f"{spread(speed):.1f} | {', '.join(f'{v:.4f}' for v in accuracy)} | {mean(accuracy):.4f} ± "
                     f"{spread(accuracy):.4f} | {fmt(summary[name]['share'], '.0%')} |")
    lines += ["", "## Issue 26's goal (an AMX CPU, the default precision)", ""] + amx_goal(summary, host) + [""]
    for seed in seeds:
        rows, ran = derived[seed]
        lines += [f"## Seed {seed}", ""] + [f"#{line}" if line.startswith("## ") else line
                                            for line in tables(rows, ran)] + [""]
    failed = [f"- seed {seed}, {name}: {m['failed']}" for seed in seeds for name, m in runs[seed].items()
              if "failed" in m]
    return "\n".join(lines + closing(failed, {str(seed): runs[seed] for seed in seeds}))


def amx_goal(summary: dict[str, dict], host: dict) -> list[str]:
    """Issue 26's three checks on the seeds' means (only those whose methods ran), and what this CPU can say."""
    lines = [] if {"amx_bf16", "amx_tile"} & set(host.get("bf16_flags", [])) else [
        "This CPU has no AMX: the goal is set for one (bf16 chosen by `auto`), so these checks are not its verdict.",
        ""]
    full, trainer = summary.get("full"), summary.get("trainer_grouped")
    if full and trainer:
        times = mean(full["speed"]) / mean(trainer["speed"])
        lines.append(f"- [{'x' if times >= AMX_SPEEDUP else ' '}] full ≥ {AMX_SPEEDUP:g}× the Trainer with "
                     f"group_by_length, training samples/s (means): {times:.2f}×")
        gap, allowed = mean(full["accuracy"]) - mean(trainer["accuracy"]), max(spread(full["accuracy"]),
                                                                                spread(trainer["accuracy"]))
        lines.append(f"- [{'x' if gap >= -allowed else ' '}] full's test accuracy equal to the Trainer's within the "
                     f"seeds' spread: {100 * gap:+.2f} points (larger sd {100 * allowed:.2f})")
    if full:
        share = full["share"]
        lines.append(f"- [{'x' if share and share >= AMX_PEAK_SHARE else ' '}] full ≥ {AMX_PEAK_SHARE:.0%} of the "
                     f"matmul peak measured in this invocation: {fmt(share, '.0%')}")
    return lines
