"""Mixed precision chosen for the hardware (`train.mixed_precision=auto`, the default).

bf16 where the device computes it fast: a CUDA GPU with bf16, or a CPU with AMX-BF16 or AVX-512 BF16 (on an
Intel Xeon with AMX a bf16 matmul runs about 6x an fp32 one); fp16 with loss scaling on a GPU without bf16; fp32
elsewhere (a CPU with AVX2 only emulates bf16, slower than fp32). The choice and its reason are logged and
recorded (config.yaml holds the chosen value, metrics.json and the card the reason), and the same choice serves the
run's training, evaluation, feature extraction, contrastive phase and MLM adaptation.

`NLPTRANSFER_NO_BF16=1` in the environment keeps `auto` off bf16 on the CPU (e.g. to compare with fp32 figures,
or under a hypervisor whose bf16 is slow); `train.mixed_precision=no|fp16|bf16` sets the precision outright.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""The CPU flags (as /proc/cpuinfo names them) of matrix units that compute bf16 natively."""
NO_BF16_ENV = "NLPTRANSFER_NO_BF16"
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Choice:
    value: str
    """What Accelerate gets: `no` (fp32), `fp16` or `bf16`."""
    reason: str
    """Why, in a few words (logged, in metrics.json and on the card)."""


def cpu_flags(cpuinfo: Path | None = None) -> set[str]:
    """The CPU's feature flags (Linux's /proc/cpuinfo); empty where they cannot be read."""
    try:
        text = (cpuinfo or CPUINFO).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


def bf16_turned_off() -> bool:
    """Whether `NLPTRANSFER_NO_BF16` keeps `auto` off bf16 on the CPU."""
    return os.environ.get(NO_BF16_ENV, "").strip() not in ("", "0")


def cpu_bf16_flags() -> list[str]:
    """The CPU's native bf16 flags (amx_bf16, avx512_bf16)."""
    return sorted(set(CPU_BF16_FLAGS) & cpu_flags())


def choose(requested: str) -> Choice:
    """The precision of a run asked for `requested` (`auto`, `no`, `fp16`, `bf16`) on this machine."""
    import torch

    if requested != "auto":
        check_device(requested, torch.cuda.is_available())
        return Choice(requested, "set by train.mixed_precision")
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported():
            return Choice("bf16", f"auto: {name} computes bf16")
        return Choice("fp16", f"auto: {name} has no bf16, fp16 with loss scaling")
    flags = cpu_bf16_flags()
    if flags and not bf16_turned_off():
        return Choice("bf16", f"auto: the CPU has {' and '.join(flags)}")
    why = (f"{NO_BF16_ENV} is set" if flags else
           "the CPU has no AMX-BF16 or AVX-512 BF16 (bf16 would be emulated, slower)")
    return Choice("no", f"auto: fp32, {why}")


def check_device(requested: str, gpu: bool) -> None:
    """fp16 needs a GPU (Accelerate refuses it on a CPU); bf16 on a GPU needs one that has bf16."""
    import torch

    from ..errors import ConfigError

    if requested == "fp16" and not gpu:
        raise ConfigError("train.mixed_precision=fp16 needs a CUDA GPU; on a CPU use auto (bf16 where the CPU has "
                          "AMX or AVX-512 BF16, else fp32), no or bf16")
    if requested == "bf16" and gpu and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train.mixed_precision=bf16: {torch.cuda.get_device_name()} has no bf16; use auto or fp16")


def check_process(value: str) -> None:
    """Accelerate keeps one precision per process: a run asking for another than the process's (a notebook that ran
    an fp32 run, then asks for bf16) is refused in one line rather than changing the process's state under its
    owner's own Accelerator."""
    from accelerate.state import AcceleratorState, is_initialized

    from ..errors import ConfigError

    if is_initialized() and AcceleratorState().mixed_precision != value:
        current = AcceleratorState().mixed_precision
        raise ConfigError(f"train.mixed_precision={value}: this process already computes in {current} (Accelerate "
                          f"keeps one precision per process); pass train.mixed_precision={current}, or run in a fresh "
                          "process (restart the notebook's kernel)")


def resolved(cfg, choice: Choice | None = None):
    """`cfg` with `train.mixed_precision` replaced by the chosen value (`auto` resolved), and the choice."""
    import dataclasses

    choice = choice or choose(cfg.train.mixed_precision)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mixed_precision=choice.value)), choice
