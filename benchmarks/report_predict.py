"""The Markdown report of benchmarks/bench_predict.py: throughput and accuracy per runtime, the goal, the profile."""

from __future__ import annotations

import json

from bench_predict import AMX_POINTS, AMX_SPEEDUP, GOAL_POINTS, GOAL_SPEEDUP, LABELS

MEASURED = """- **texts/s**: test texts over the best of the timed passes (after a warm-up of 2 batches), tokenization,
  padding and the label rows included, model loading not; **× pipeline**: that over `pipeline()`'s.
- **accuracy**: the predicted label against the run's gold test labels; **Δ**: points against nlptransfer's exact
  fp32 predict (`torch`); **same label**: the share of texts labelled as `torch` labels them.
- **load s**: loading the model (and quantizing it, for `int8`); **peak RSS**: the process's (`ru_maxrss`)."""


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}×" if value and base else "–"


def rows(measured: dict) -> list[str]:
    base = measured.get("pipeline", {}).get("texts_per_second")
    exact = measured.get("torch", {})
    lines = ["| method | texts/s | × pipeline | accuracy | Δ vs fp32 (points) | same label as fp32 | load s "
             "| peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
    for method, m in measured.items():
        if "failed" in m:
            lines.append(f"| {LABELS[method]} | failed: {m['failed']} | | | | | | |")
            continue
        delta = f"{100 * (m['accuracy'] - exact['accuracy']):+.2f}" if "accuracy" in exact else "–"
        same = (f"{sum(map(str.__eq__, m['labels'], exact['labels'])) / len(m['labels']):.2%}"
                if "labels" in exact else "–")
        lines.append(f"| {LABELS[method]} | {m['texts_per_second']:.1f} | {ratio(m['texts_per_second'], base)} | "
                     f"{m['accuracy']:.4f} | {delta} | {same} | {m['load_seconds']:.1f} | "
                     f"{m['peak_rss_bytes'] / 2**20:.0f} |")
    return lines


def goal(measured: dict) -> list[str]:
    """Issue 18's goal for the int8 runtimes; issue 26's for bf16 (set for a CPU with AMX)."""
    base, exact = measured.get("pipeline", {}), measured.get("torch", {})
    lines = []
    for method, speed, points, whose in (("int8", GOAL_SPEEDUP, GOAL_POINTS, ""),
                                         ("onnx-int8", GOAL_SPEEDUP, GOAL_POINTS, ""),
                                         ("bf16", AMX_SPEEDUP, AMX_POINTS, " (issue 26's goal, for a CPU with AMX)")):
        m = measured.get(method, {})
        if not all("texts_per_second" in x for x in (m, base, exact)):
            continue
        speedup, change = m["texts_per_second"] / base["texts_per_second"], 100 * (m["accuracy"] - exact["accuracy"])
        met = speedup >= speed and change >= -points - 1e-9  # float error: 0.745 - 0.75 is not exactly -0.005
        lines.append(f"- `{method}`: {speedup:.2f}× `pipeline()` (goal ≥ {speed:g}×), accuracy {change:+.2f} "
                     f"points against fp32 (goal: at most {points:g} lost): **{'met' if met else 'not met'}**{whose}")
    return lines


def profiles(measured: dict) -> list[str]:
    lines = []
    for method, m in measured.items():
        if m.get("profile"):
            top = ", ".join(f"`{p['op']}` {p['share']:.0%}" for p in m["profile"])
            lines.append(f"- {LABELS[method]}: {top}")
    return lines


def render(measured: dict, host: dict, command: str) -> str:
    texts = next((m["texts"] for m in measured.values() if "texts" in m), 0)
    sizes = ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in host["sizes"].items())
    export = (f"exported in {host['export_seconds']:.1f} s" if host["export_seconds"] is not None
              else "already exported")
    raw = {method: {k: v for k, v in m.items() if k != "labels"} for method, m in measured.items()}
    return "\n".join([
        "# Predict throughput: serving runtimes against `transformers.pipeline()` (issue 18)", "",
        f"`{command}`", "",
        f"Model: `{host['run']}` (its test split, {texts} texts, batch 32, each method in a fresh process). "
        f"Machine: {host['cpu']}, {host['cores']} cores, torch {host['torch']} (quantized engine "
        f"`{host['quantized_engine']}`), transformers {host['transformers']}, onnxruntime {host['onnxruntime']}; "
        f"int8-relevant CPU flags: {', '.join(host['int8_instructions']) or 'none'}; bf16: "
        f"{', '.join(host.get('bf16_instructions', [])) or 'none (runtime=bf16 is emulated, slow)'}. Load average "
        f"{host['load_before'][0]:.2f} before, {host['load_after'][0]:.2f} after; "
        f"{host['total_seconds']:.0f} s in all. "
        f"ONNX files ({export}): {sizes}.", "",
        *rows(measured), "", MEASURED, "", "## The issue's goal", "",
        *(goal(measured) or ["- not measured (needs pipeline, torch and an int8 runtime)"]), "",
        "## Where the time goes (torch profiler, self CPU time, 8 batches)", "",
        *(profiles(measured) or ["- not profiled"]), "",
        "## Raw measurements", "", "```json", json.dumps(raw, indent=1), "```", ""])
