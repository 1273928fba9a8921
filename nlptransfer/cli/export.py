"""Command line: `python -m nlptransfer.export RUN_OR_MODEL_DIR [formats=onnx,onnx-int8]` (or `model=DIR`).

Writes the serving files of a trained model into its folder's `onnx/`, for
`python -m nlptransfer.predict model=... runtime=onnx|onnx-int8` (`runtime=int8` needs no export).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .. import runtimes
from ..errors import ConfigError
from ..outputs.console import quiet_libraries
from .run import parse_args, parse_options, run_command, usage_exit


@dataclass
class ExportOptions:
    model: str | None = None
    """A run folder or a saved model folder; the files are written into its model folder's onnx/."""
    formats: str = ",".join(runtimes.EXPORTED)
    """Comma-separated: onnx (fp32 graph), onnx-int8 (int8 weights; writes the fp32 graph it quantizes too)."""


USAGE = """usage: python -m nlptransfer.export RUN_OR_MODEL_DIR [formats=onnx,onnx-int8]
                                     [--debug] [--quiet] [--help]
examples:
  python -m nlptransfer.export runs/sentiment-full-20250101-120000
  python -m nlptransfer.predict model=runs/sentiment-full-20250101-120000 runtime=onnx-int8 text="what a great day\""""


def export_command(argv: list[str]) -> int:
    flags, overrides, config_file = parse_args(argv)
    if (code := usage_exit(flags, overrides, config_file, USAGE, ExportOptions(), "export")) is not None:
        return code
    folders = [item for item in overrides if "=" not in item]  # `export RUN_DIR` as `push RUN_DIR` reads
    if len(folders) > 1 or folders and any(item.startswith("model=") for item in overrides):
        raise ConfigError("pass one model folder: python -m nlptransfer.export RUN_OR_MODEL_DIR (or model=...)")
    options = parse_options(ExportOptions(model=folders[0] if folders else None),
                            [item for item in overrides if "=" in item])
    if not options.model:
        raise ConfigError("pass the model folder: python -m nlptransfer.export RUN_OR_MODEL_DIR [formats=...]")
    from ..predictor import export_model  # torch loads here: --help and option errors answer at once

    quiet_libraries()
    written = export_model(options.model, [name.strip() for name in options.formats.split(",") if name.strip()])
    if not flags["quiet"]:
        for path in written:
            print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(export_command, argv)


if __name__ == "__main__":
    sys.exit(main())
