"""Command line: `python -m nlptransfer.run recipe=NAME|path.py [key=value ...] [--config f.yaml]`
(also `nlptransfer run ...`).

Flags: `--help` (recipes, or every option of a recipe), `--debug` (tracebacks), `--quiet` (warnings
and errors only, no progress bars), `--verbose` (nlptransfer's DEBUG lines, such as the whole resolved
config, and the libraries' own warnings and messages, which are hidden by default).
Progress bars are drawn on a terminal only; redirected output (`2> run.log`, CI) gets a plain line per
tenth of the training instead, and `TQDM_DISABLE=1` hides the bars anywhere.
Errors a user can fix print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .. import strategies, tasks
from ..api import load_recipe, recipe_names
from ..config import apply_overrides, describe, load_yaml
from ..errors import ConfigError, NlpTransferError
from ..outputs import console
from ..outputs.console import quiet_libraries

__all__ = ["configure_console", "main", "parse_args", "parse_options", "quiet_libraries", "run_command", "run_recipe"]

T = TypeVar("T")

USAGE = """usage: python -m nlptransfer.run recipe=NAME|path/to/recipe.py [key=value ...] [--config file.yaml]
                                  [--help] [--version] [--debug] [--quiet | --verbose]

recipes: {recipes}
strategies: {strategies}
tasks: {tasks}
`recipe=NAME --help` lists every option with its default.
examples:
  python -m nlptransfer.run recipe=sentiment
  python -m nlptransfer.run recipe=sentiment strategy=lora train.epochs=1 data.max_train_samples=2000
  python -m nlptransfer.run recipe=topic model=path/to/checkpoint output_dir=runs/topic overwrite=true"""


def parse_args(argv: list[str]) -> tuple[dict, list[str], str | None]:
    """Split argv into flags, key=value overrides and the --config file."""
    flags = {"help": False, "debug": False, "quiet": False, "verbose": False}
    overrides, config_file = [], None
    items = iter(argv)
    for item in items:
        if item in ("-h", "--help"):
            flags["help"] = True
        elif item in ("--debug", "--quiet", "--verbose"):
            flags[item[2:]] = True
        elif item == "--config":
            config_file = next(items, None)
            if config_file is None:
                raise ConfigError("--config needs a file: --config path/to/config.yaml")
        elif item.startswith("--config="):
            config_file = item.split("=", 1)[1]
        elif item.startswith("-"):
            raise ConfigError(f"unknown flag '{item}'; flags: --help, --version, --debug, --quiet, --verbose, "
                              "--config FILE")
        else:
            overrides.append(item)
    if flags["quiet"] and flags["verbose"]:
        raise ConfigError("--quiet and --verbose contradict each other; pass one of them")
    return flags, overrides, config_file


def parse_options(options: T, overrides: list[str]) -> T:
    """Apply `key=value` overrides to a dataclass of command options, each value read by its option's type
    (free text and paths stay as typed, `${...}` included; `null` unsets an optional option)."""
    return apply_overrides(options, overrides, interpolate=False)


def usage_exit(flags: dict, overrides: list[str], config_file: str | None, usage: str, defaults,
               command: str, takes_config: bool = False) -> int | None:
    """For a key=value command: 0 after printing --help (the usage and every option of `defaults`), 2 after
    printing the usage when nothing is given, None to go on; a --config file is refused unless `takes_config`."""
    if flags["help"]:
        print(f"{usage}\noptions (key=default):\n{describe(defaults)}")
        return 0
    if not overrides and not config_file:
        print(usage, file=sys.stderr)
        return 2
    if config_file and not takes_config:
        raise ConfigError(f"{command} takes no --config file; pass its options as key=value")
    return None


def configure_console(quiet: bool = False, verbose: bool = False) -> None:
    """What a run prints: by default nlptransfer's INFO lines and progress bars (on a terminal; plain progress
    lines otherwise), without library chatter;
    `quiet`: warnings and errors only, no bars; `verbose`: nlptransfer's DEBUG lines and the libraries' own
    warnings and messages too. The command owns its process: it sets up its logging (a run from Python does not)."""
    console.set_console(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO, libraries=verbose)
    console.show_progress_bars(not quiet)
    console.take_process_logging()
    console.quiet_libraries()


def run_command(command: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run a command line: a user error prints one line on stderr and returns 2; `--debug` raises it;
    `--version` prints the versions and returns 0."""
    argv = sys.argv[1:] if argv is None else argv
    if "--version" in argv:
        print(version_line())
        return 0
    try:
        return command(argv)
    except NlpTransferError as e:
        if "--debug" in argv:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... --help | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(run_recipe, argv)


def version_line() -> str:
    """`nlptransfer 0.1.0 (torch 2.x, transformers 5.x)`: the installed versions, read without importing them."""
    from importlib import metadata

    from .. import __version__

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"nlptransfer {__version__} (" + ", ".join(f"{name} {installed(name)}" for name in
                                                       ("torch", "transformers", "peft", "accelerate")) + ")"


def run_recipe(argv: list[str]) -> int:
    """Run the recipe that argv names, or print the usage or the recipe's options."""
    flags, overrides, config_file = parse_args(argv)
    recipe_items = [o for o in overrides if o.startswith("recipe=")]
    if not recipe_items:
        print(USAGE.format(recipes=", ".join(recipe_names()), strategies=", ".join(strategies.names()),
                           tasks=", ".join(tasks.names())), file=sys.stdout if flags["help"] else sys.stderr)
        return 0 if flags["help"] else 2
    recipe = load_recipe(recipe_items[-1].split("=", 1)[1])
    cfg = recipe.Config()
    if config_file:
        cfg = load_yaml(cfg, config_file)
    cfg = apply_overrides(cfg, [o for o in overrides if not o.startswith("recipe=")])
    if flags["help"]:
        summary = (recipe.__doc__ or "").strip().splitlines() or [""]
        print(f"{Path(recipe.__file__).stem}: {summary[0]}")
        print("options (key=default):")
        print(describe(cfg))
        return 0
    configure_console(quiet=flags["quiet"], verbose=flags["verbose"])
    recipe.run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
