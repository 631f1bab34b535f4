"""tune-codec COMMAND [ARGS]: one command for every entry point, as Ray, MLflow and Optuna give theirs.

Each command hands ARGS unchanged to the entry point of the same name, so `tune-codec search ARGS` is
`python -m tune_codec.run ARGS` (the same flags, help, output and exit codes); the python -m forms go on
working. Commands are imported when run: `tune-codec --help` starts in a fraction of a second."""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

PROG = "tune-codec"

# name -> (module with main(argv), arguments put first, what it does, the same as)
COMMANDS = {
    "train": ("train_codec", (), "train one codec, logged to MLflow", "python train_codec.py"),
    "search": (
        "tune_codec.search.driver",
        (),
        "search loss weights and learning rate: Ray Tune + Optuna, logged to MLflow",
        "python -m tune_codec.run",
    ),
    "report": (
        "tune_codec.report.report",
        (),
        "a finished search's table, importances, plots and cost",
        "python -m tune_codec.report",
    ),
    "evaluate": (
        "tune_codec.evaluation.evaluate",
        (),
        "a checkpoint beside Opus on a folder of audio: SNR, SI-SDR, PESQ, STOI",
        "python -m tune_codec.evaluate",
    ),
    "encode": (
        "tune_codec.evaluation.codes",
        ("encode",),
        "audio -> a trained codec's codes file",
        "python -m tune_codec.codec encode",
    ),
    "decode": (
        "tune_codec.evaluation.codes",
        ("decode",),
        "a codes file -> audio",
        "python -m tune_codec.codec decode",
    ),
    "doctor": (
        "tune_codec.doctor.cli",
        (),
        "a failing run's numbers -> what is wrong -> a search space to fix it",
        "python -m tune_codec.doctor",
    ),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} COMMAND [ARGS]   ({PROG} COMMAND --help: the command's flags)", "", "commands:"]
    lines += [f"  {name:<{width}}  {what} ({same})" for name, (_, _, what, same) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        try:
            print(f"{PROG} {version('tune-codec')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            print(f"{PROG} (not installed)")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"{PROG}: error: unknown command {name!r} (allowed: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module_name, first, _, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not module_name.startswith(e.name):  # a dependency it lacks: a bug
            raise
        print(
            f"{PROG}: error: {name!r} is not in this version of tune-codec ({module_name})", file=sys.stderr
        )
        return 2
    return module.main([*first, *rest])
