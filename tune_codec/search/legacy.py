"""Searches saved before the package had subpackages: Ray pickled their searcher, stopper, callbacks and
schedulers by module path (tune_codec.trial.BudgetSearch ...), so a resume answers those paths."""

from __future__ import annotations

import importlib
import importlib.util
import sys

# the flat layout's module -> where it lives now
MOVED = {
    "balancer": "codec.balancer",
    "checkpoint": "training.checkpoint",
    "cluster": "search.cluster",
    "codec": "evaluation.codes",
    "corpus": "data.corpus",
    "cost": "search.cost",
    "data": "data.segments",
    "discriminators": "codec.discriminators",
    "evaluate": "evaluation.evaluate",
    "losses": "codec.losses",
    "model": "codec.model",
    "opus": "evaluation.opus",
    "plots": "report.plots",
    "population": "search.population",
    "quantize": "codec.quantize",
    "report": "report.report",
    "resume": "search.repair",
    "samples": "training.samples",
    "schedule": "training.schedule",
    "search": "search.driver",
    "space": "search.space",
    "stopping": "search.stopping",
    "summary": "search.summary",
    "trial": "search.trial",
    "train": "training.train",
}


def answer_old_paths() -> None:
    """Make pickle's lookups of the flat layout's classes find them where they are now. An old module
    whose name is a package now (tune_codec.data, .codec, .search, .report) answers with the package,
    given the old module's names."""
    for old, new in MOVED.items():
        module = importlib.import_module(f"tune_codec.{new}")
        name = f"tune_codec.{old}"
        if importlib.util.find_spec(name) is None:
            sys.modules.setdefault(name, module)
            continue
        package = importlib.import_module(name)
        for attr, value in vars(module).items():
            if not attr.startswith("_") and not hasattr(package, attr):
                setattr(package, attr, value)
