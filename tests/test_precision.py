"""train.mixed_precision=auto: bf16 where the device computes it fast, fp32 elsewhere; the choice is recorded."""

from __future__ import annotations

import pytest

from nlptransfer import config
from nlptransfer.engine import precision
from nlptransfer.errors import ConfigError

AMX_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
AVX2_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"


@pytest.fixture
def cpu_only(tmp_path, monkeypatch):
    """A CPU-only machine whose /proc/cpuinfo is the text given; NLPTRANSFER_NO_BF16 (the suite's) cleared."""
    import torch

    monkeypatch.delenv(precision.NO_BF16_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def with_cpuinfo(text: str) -> None:
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setattr(precision, "CPUINFO", path)
    return with_cpuinfo


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(AMX_CPUINFO)
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= precision.cpu_flags(path)
    assert precision.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(("cpuinfo", "value", "words"), [
    (AMX_CPUINFO, "bf16", "the CPU has amx_bf16 and avx512_bf16"),
    (AVX2_CPUINFO, "no", "the CPU has no AMX-BF16 or AVX-512 BF16"),
])
def test_auto_picks_bf16_only_on_a_cpu_that_computes_it(cpu_only, cpuinfo, value, words):
    cpu_only(cpuinfo)
    choice = precision.choose("auto")
    assert choice.value == value and words in choice.reason


def test_the_environment_keeps_auto_off_bf16_and_an_explicit_value_is_kept(cpu_only, monkeypatch):
    cpu_only(AMX_CPUINFO)
    monkeypatch.setenv(precision.NO_BF16_ENV, "1")
    assert precision.choose("auto") == precision.Choice("no", f"auto: fp32, {precision.NO_BF16_ENV} is set")
    monkeypatch.setenv(precision.NO_BF16_ENV, "0")
    assert precision.choose("auto").value == "bf16"
    assert precision.choose("no") == precision.Choice("no", "set by train.mixed_precision")
    assert precision.choose("bf16").value == "bf16"  # emulated on a CPU without it: slow, but it computes


def test_fp16_on_a_cpu_is_refused_in_one_line(cpu_only, tiny_model_dir, reviews_csv, tmp_path, capsys):
    from nlptransfer.cli.run import main

    cpu_only(AVX2_CPUINFO)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU; on a CPU use auto"):
        precision.choose("fp16")
    assert main(["recipe=sentiment", f"model={tiny_model_dir}", f"data.train_file={reviews_csv}", "data.name=null",
                 "train.mixed_precision=fp16", f"output_dir={tmp_path / 'run'}"]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_gpu_gets_bf16_or_else_fp16(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.choose("auto") == precision.Choice("fp16", "auto: Tesla T4 has no bf16, fp16 with loss scaling")
    with pytest.raises(ConfigError, match="bf16: Tesla T4 has no bf16; use auto or fp16"):
        precision.choose("bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.choose("auto").value == "bf16"


def test_auto_is_the_default_and_every_value_is_accepted_and_resolved(cpu_only):
    cpu_only(AVX2_CPUINFO)
    assert config.RunConfig().train.mixed_precision == "auto"
    for value in ("auto", "no", "fp16", "bf16"):
        cfg = config.validate(config.apply_overrides(config.RunConfig(), [f"train.mixed_precision={value}"]))
        if value == "fp16":  # read and validated; this CPU cannot compute it (above)
            continue
        resolved, choice = precision.resolved(cfg)
        assert resolved.train.mixed_precision == ("no" if value == "auto" else value) == choice.value
