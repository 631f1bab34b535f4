"""The layering as code: each module imports only from layers below its own (or from its own package),
and no import cycle exists, so the folders show the data flow the README describes."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "tune_codec"

# lowest first; a module may import from an earlier layer, or from its own subpackage
LAYERS = [
    ("tune_codec.errors", "tune_codec.names"),  # words: the errors a user can cause, the names that flow
    ("tune_codec.cli", "tune_codec.files"),  # flags and tables, files written atomically
    ("tune_codec.config",),  # every field of a run
    ("tune_codec.metrics", "tune_codec.pages", "tune_codec.tracking"),  # scores, HTML pages, MLflow
    ("tune_codec.codec",),  # pure torch: model, quantizer, losses, discriminators, balancer
    # the doctor's rules, pure: a run's numbers -> findings; low, so the search's summary and the report
    # name a stopped trial's diagnosis too
    (
        "tune_codec.doctor.series",
        "tune_codec.doctor.findings",
        "tune_codec.doctor.waveform",
        "tune_codec.doctor.rules",
    ),
    ("tune_codec.data",),  # audio files -> cache -> segments
    ("tune_codec.training",),  # one run
    ("tune_codec.evaluation",),  # a trained codec judged on audio, beside Opus
    ("tune_codec.search",),  # trials on Ray Tune
    ("tune_codec.report",),  # what a search found
    ("tune_codec.doctor",),  # a failing run's numbers -> findings -> a search space, and that search
    ("tune_codec.run", "tune_codec.evaluate", "tune_codec.main", "__main__"),  # entry points
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    if module.endswith(".__main__"):
        return len(LAYERS) - 1
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: add it to one")


def package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def imports() -> dict[str, set[str]]:
    """Each module of tune_codec -> the tune_codec modules it imports (anywhere in it, lazily too)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name, targets = module_name(path), set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("tune_codec.")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tune_codec"):
                base = node.module
                # `from tune_codec.evaluation import opus` imports the module tune_codec.evaluation.opus
                subs = {
                    f"{base}.{a.name}"
                    for a in node.names
                    if (PACKAGE.parent / f"{base}.{a.name}".replace(".", "/")).with_suffix(".py").exists()
                }
                targets |= subs or {base}
        found[name] = targets - {name}
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a higher layer, or of another package in the same layer."""
    wrong = []
    for module, targets in graph.items():
        for target in sorted(targets):
            same_package = package(target) == package(module) and layer(target) == layer(module)
            if not (layer(target) < layer(module) or same_package):
                wrong.append(f"{module} imports {target}")
    return wrong


def cycles(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    found = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state and nxt in graph:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_import_points_down_the_layers():
    assert upward(imports()) == []


def test_no_import_cycle():
    assert cycles(imports()) == []


def test_the_checks_see_an_upward_import_and_a_cycle():
    graph = imports()
    assert "tune_codec.codec.model" in graph["tune_codec.training.train"]  # the scan finds imports
    assert upward({"tune_codec.codec.model": {"tune_codec.search.trial"}}) == [
        "tune_codec.codec.model imports tune_codec.search.trial"
    ]
    assert upward({"tune_codec.data.corpus": {"tune_codec.data.segments"}}) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]


def test_a_search_saved_by_the_flat_layout_unpickles_into_the_new_modules():
    """Ray pickled a search's Tuner with the flat layout's module paths (tune_codec.trial.BudgetSearch,
    tune_codec.stopping.CollapseStopper ...); a resume must find those classes where they are now.
    tests/data/flat_layout_tuner.pkl is the tuner.pkl of a smoke search run by the flat layout and
    interrupted (resumed to the end by this layout too)."""
    import pickle

    from tune_codec.search.legacy import answer_old_paths
    from tune_codec.search.stopping import CollapseStopper
    from tune_codec.search.trial import BudgetSearch, MlflowTrials

    saved = (Path(__file__).parent / "data" / "flat_layout_tuner.pkl").read_bytes()
    assert b"tune_codec.trial" in saved and b"tune_codec.search.trial" not in saved
    answer_old_paths()
    tuner = pickle.loads(saved)
    assert isinstance(tuner["_tune_config"].search_alg, BudgetSearch)
    assert isinstance(tuner["_run_config"].stop, CollapseStopper)
    assert isinstance(tuner["_run_config"].callbacks[0], MlflowTrials)
