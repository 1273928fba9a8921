"""benchmarks/active.py (issue 27) writes its report from rows; no model runs here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "active.py"
spec = importlib.util.spec_from_file_location("active_benchmark", SCRIPT)
active = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = active
spec.loader.exec_module(active)


def row(query: str, seed: int, labels: int, accuracy: float) -> dict:
    return {"dataset": "tweets", "query": query, "seed": seed, "labels": labels, "accuracy": accuracy,
            "strategy": "contrastive", "pool": 4000, "test": 1000, "batch_size": 16, "load_average": 1.0,
            "command": "python benchmarks/active.py"}


def test_report_gives_mean_curves_area_and_the_labels_to_reach_randoms_final_accuracy():
    rows = [row("random", 0, 16, 0.40), row("random", 0, 32, 0.50), row("random", 1, 16, 0.42),
            row("random", 1, 32, 0.54), row("breaking_ties", 0, 16, 0.45), row("breaking_ties", 0, 32, 0.60)]
    report = active.render(rows)
    assert "    python benchmarks/active.py" in report
    assert "| random | 2 | 0.4100 | 0.5200 | 0.4650 | 32 (100%) |" in report
    assert "| breaking_ties | 1 | 0.4500 | 0.6000 | 0.5250 | 32 (100%) |" in report
    early = rows + [row("least_confidence", 0, 16, 0.53), row("least_confidence", 0, 32, 0.55)]
    assert "| least_confidence | 1 | 0.5300 | 0.5500 | 0.5400 | 16 (50%) |" in active.render(early)
    assert "not reached" in active.render(rows + [row("entropy", 0, 16, 0.3), row("entropy", 0, 32, 0.31)])


def test_the_report_names_the_cpu_and_its_bf16_flags():
    epyc = {"cpu": "AMD EPYC", "cores": 2, "torch_threads": 2, "bf16_flags": [], "avx512": False}
    xeon = {"cpu": "Intel Xeon", "cores": 2, "torch_threads": 2, "bf16_flags": ["amx_bf16", "avx512_bf16"],
            "avx512": True}
    report = active.render([row("random", 0, 16, 0.4), dict(row("random", 1, 16, 0.4), machine=epyc),
                            dict(row("random", 2, 16, 0.4), machine=xeon)])
    assert ("Machine: AMD EPYC (2 cores, 2 torch threads; bf16 flags: none; AVX-512: no); Intel Xeon (2 cores, 2 "
            "torch threads; bf16 flags: amx_bf16, avx512_bf16; AVX-512: yes) (1 earlier rows did not record theirs)."
            ) in report
    assert "Machine: not recorded." in active.render([row("random", 0, 16, 0.4)])


def test_ner_rows_are_reported_as_entity_f1_beside_accuracy():
    ner = [dict(row(query, 0, labels, f1), dataset="wnut16", metric="entity_f1", score=f1) for query, labels, f1 in
           [("random", 8, 0.10), ("random", 16, 0.20), ("least_confidence", 8, 0.15), ("least_confidence", 16, 0.25)]]
    for each in ner:
        del each["accuracy"]
    report = active.render([row("random", 0, 16, 0.40), *ner])
    assert "strategy contrastive): mean test accuracy" in report
    assert "strategy contrastive): mean test entity_f1" in report
    assert "| area (entity_f1) | labels to random's final entity_f1 |" in report
    assert "| least_confidence | 1 | 0.1500 | 0.2500 | 0.2000 | 16 (100%) |" in report


def test_wnut16_splits_into_pool_and_test_sentences_with_their_tags():
    args = active.parse_args(["--dataset", "wnut16", "--pool-size", "40", "--test-size", "10"])
    pool, test = active.splits(args)
    assert len(pool) == 40 and len(test) == 10 and not set(pool) & set(test)
    sentence, tags = next(iter(pool.items()))
    assert len(sentence.split(" ")) == len(tags) and all(tag == "O" or tag[:2] in ("B-", "I-") for tag in tags)
    assert args.strategy == "frozen" and active.metric_of("wnut16") == "entity_f1"
