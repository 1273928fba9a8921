#!/usr/bin/env bash
# Issue 18 part 4, step 1 of 2 (here, on the CPU machine): what the lent GPU machine lacks, in .carry/ (ignored by git).
#   - wheels for Python 3.12 of the packages the device image does not have (datasets, evaluate, omegaconf, ...);
#   - the packaged MiniLM in bfloat16 (45 MB instead of 88: the call's working tree may hold 64 MiB) and the
#     packaged tweets, so that `recipe=sentiment` runs there with no network.
# Then, with the device tool:  run(command="bash benchmarks/gpu_session.sh", carry=[".carry"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
rm -rf .carry && mkdir -p .carry/whl .carry/sdist
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
# the versions installed here, where the tests pass; seqeval has no wheel (built there from its sdist)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .carry/whl $(for name in datasets evaluate omegaconf antlr4-python3-runtime dill multiprocess; do
        echo "$name==$(version $name)"; done)
python3 -m pip download -q --no-deps --no-binary=:all: -d .carry/sdist "seqeval==$(version seqeval)"
python3 - <<'EOF'
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from nlptransfer import catalog

source, target = Path(catalog.resolve_model("minilm")), Path(".carry/minilm-bf16")
target.mkdir(parents=True)
for path in source.rglob("*"):
    if path.is_file() and path.name != "model.safetensors":
        (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.relative_to(source))
weights = load_file(source / "model.safetensors")
save_file({name: t.to(torch.bfloat16) for name, t in weights.items()}, target / "model.safetensors.bf16")
from nlptransfer.data.readers import read_packaged

read_packaged("tweets")["train"].to_csv(".carry/tweets.csv", index=False)  # text,label; clean UTF-8
EOF
du -sh .carry
