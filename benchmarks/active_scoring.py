"""How fast the active-learning loop scores its pool (issue 27): texts/s of `Scorer.score` (MiniLM with a 3-label
head, 64 tokens, batches of 64, 2 threads) on packaged tweets, in length order (as the loop scores) and, for a
baseline in the same process, in the pool's own order (each batch padded to its longest tweet, as before).

    python benchmarks/active_scoring.py --texts 30000 --baseline 5000
    python benchmarks/active_scoring.py --texts 200 --baseline 200          # a quick check
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine_line  # noqa: E402  (the CPU's model and flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=30000, help="tweets scored in length order")
    parser.add_argument("--baseline", type=int, default=5000, help="of them, scored again in the pool's order")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    from nlptransfer import catalog, models
    from nlptransfer.active.scoring import Scorer
    from nlptransfer.data.readers import read_packaged

    torch.set_num_threads(args.threads)
    frame = read_packaged("tweets")["train"]
    texts = frame.assign(text=frame["text"].str.strip()).drop_duplicates("text").sample(
        args.texts, random_state=0)["text"].tolist()
    path = catalog.resolve_model("minilm")
    scorer = Scorer(AutoModelForSequenceClassification.from_pretrained(path, num_labels=3),
                    models.load_tokenizer("minilm", path=path), ["negative", "neutral", "positive"])
    print(f"{machine_line()}; {args.threads} threads scoring; load average {os.getloadavg()[0]:.2f}")
    for name, chosen in (("length order", texts), ("pool order", texts[:args.baseline])):
        if name == "pool order":  # the order as given: what the loop did before
            scorer.length_order = lambda texts, max_length, split_words=False: np.arange(len(texts))
        start = time.perf_counter()
        scorer.score(chosen, 64, 64)
        seconds = time.perf_counter() - start
        print(f"{name}: {len(chosen)} texts in {seconds:.1f} s, {len(chosen) / seconds:.0f} texts/s", flush=True)


if __name__ == "__main__":
    main()
