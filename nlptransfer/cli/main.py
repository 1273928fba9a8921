"""The `nlptransfer` console script: `nlptransfer run|predict|export|push|compare|curve|sweep|ensemble|continual|
active|distill [options]`.

Each subcommand is the module of the same name (`python -m nlptransfer.run ...` works too);
`nlptransfer recipe=sentiment ...` without a subcommand runs, as before.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = ("run", "predict", "export", "push", "compare", "curve", "sweep", "ensemble", "continual", "active",
            "distill")

USAGE = f"""usage: nlptransfer {{{','.join(COMMANDS)}}} [options]   (add --help after a command for its options)
  nlptransfer run recipe=sentiment strategy=lora
  nlptransfer predict model=runs/<run> text="what a great day"
  nlptransfer export model=runs/<run> formats=onnx-int8   (then predict ... runtime=onnx-int8)
  nlptransfer push runs/<run> repo_id=user/name
  nlptransfer compare recipe=sentiment strategies=full,lora
  nlptransfer curve recipe=topic sizes=50,200,all
  nlptransfer sweep recipe=sentiment trials=20 'train.lr=loguniform(1e-5,1e-3)'
  nlptransfer ensemble runs/<run1> runs/<run2> method=weights   (then predict model=<the ensemble folder>)
  nlptransfer continual --config stages.yaml methods=[naive,replay]
  nlptransfer active pool=texts.csv labels=[pos, neg] output_dir=runs/al [--terminal | --serve]
  nlptransfer distill runs/<teacher> layers=3 unlabeled.file=texts.txt   (a smaller student, a run folder)"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return importlib.import_module(f"nlptransfer.cli.{argv[0]}").main(argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv and argv[0] == "--version":
        from .run import version_line

        print(version_line())
        return 0
    if not argv or "=" not in argv[0] and not argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        if argv:
            print(f"error: unknown command '{argv[0]}'; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module("nlptransfer.cli.run").main(argv)


if __name__ == "__main__":
    sys.exit(main())
