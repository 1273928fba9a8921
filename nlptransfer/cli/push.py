"""Command line: `python -m nlptransfer.push RUN_DIR [repo_id=user/name] ...`: export a run for the Hub, push it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import describe
from ..errors import ConfigError
from ..hub.push import export_run, push_run
from ..options import PushConfig
from .run import parse_args, parse_options, run_command


@dataclass
class PushOptions(PushConfig):
    merged: bool = True
    """LoRA runs: ship the merged model with the adapter in adapter/ (true) or the adapter alone (false)."""
    export_dir: str | None = None
    """Where to write the hub-ready folder; default: RUN_DIR/export."""
    license: str | None = None
    """The card's license (a Hub license id); default: the base model's when known, else `other`."""


USAGE = """usage: python -m nlptransfer.push RUN_DIR [repo_id=user/name] [private=true] [revision=BRANCH]
                                   [merged=false] [export_dir=DIR] [license=ID] [--debug] [--help]
Without repo_id the run is only exported (RUN_DIR/export). The token comes from HF_TOKEN or `hf auth login`."""


def push_command(argv: list[str]) -> int:
    """The command line: export the run folder, then push it when repo_id is given."""
    flags, arguments, config_file = parse_args(argv)
    if flags["help"]:
        print(f"{USAGE}\noptions (key=default):\n{describe(PushOptions())}")
        return 0
    run_dirs = [a for a in arguments if "=" not in a]
    if not arguments and not config_file:
        print(USAGE, file=sys.stderr)
        return 2
    if config_file or len(run_dirs) != 1:
        raise ConfigError("pass one run folder and key=value options: python -m nlptransfer.push RUN_DIR "
                          "repo_id=user/name")
    options = parse_options(PushOptions(), [a for a in arguments if "=" in a])
    run_dir = Path(run_dirs[0])
    if options.repo_id:
        url = push_run(run_dir, options, merged=options.merged, export_dir=options.export_dir,
                       license=options.license)
        print(f"pushed {run_dir} to {url}")
    else:
        folder = export_run(run_dir, options.export_dir or run_dir / "export", merged=options.merged,
                            license=options.license)
        print(f"exported {run_dir} to {folder}; push it with repo_id=user/name")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(push_command, argv)


if __name__ == "__main__":
    sys.exit(main())
