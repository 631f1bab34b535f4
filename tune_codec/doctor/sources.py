"""SOURCE -> the runs to diagnose: an MLflow run (its id or runs:/ID), a checkpoint folder of train_codec.py,
a search (its name, parent run id or Ray folder: each stopped or failed trial), or a text file or stdin of
debug blocks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tune_codec.config import Config, make_config
from tune_codec.doctor.paste import parse
from tune_codec.doctor.series import History, from_rows, read_run
from tune_codec.errors import DoctorError, UsageError
from tune_codec.names import BEST, COMPLETED, LAST
from tune_codec.report.report import existing_store, find_search
from tune_codec.tracking import RUN, RUN_FILE, UNREACHABLE, one_line, read_state, state_path
from tune_codec.training.checkpoint import load_state

ACCEPTED = (
    "an MLflow run id or runs:/ID, a checkpoint folder of train_codec.py, a search's name, parent run id "
    "or Ray folder, a text file of debug blocks, or - for stdin"
)
RUN_ID = re.compile(r"[0-9a-f]{32}")
SEARCH_ROLE = ("tune_codec.role", "search")  # the tag of a search's parent run


class Case(NamedTuple):
    label: str  # the run, as the report names it
    history: History
    run_id: str | None = None


class Source(NamedTuple):
    label: str  # what SOURCE was found to be
    cases: list[Case]  # one, or a search's stopped and failed trials
    name: str  # short, for a file name: a run id's start, a folder's or file's name
    search: bool = False


def read_source(
    source: str, tracking_uri: str | None, experiment: str, config: Config | None, stdin
) -> Source:
    """What SOURCE is, read; a DoctorError naming what was found and what is accepted. `config` is the
    run's for pasted text, which holds none."""
    path = Path(source)
    if source == "-":
        return text_source(stdin.read(), "stdin", config)
    if source.startswith("runs:/"):
        run_id = source.removeprefix("runs:/").strip("/").split("/")[0]
        return run_source(MlflowClient(existing_store(tracking_uri)), run_id)
    if path.is_dir():
        if any((path / name).exists() for name in (LAST, BEST, "metrics.json", RUN_FILE)):
            return checkpoint_source(path)
        if state_path(path.resolve()).exists():
            return search_source(*find(source, tracking_uri, experiment)[:2])
        raise DoctorError(
            f"folder {source!r} holds no {LAST}, metrics.json or {RUN_FILE} and is no search folder "
            f"(accepted: {ACCEPTED})"
        )
    if path.is_file():
        if path.suffix == ".pt":
            return checkpoint_source(path.parent)
        try:
            return text_source(path.read_text(), source, config)
        except UnicodeDecodeError:
            raise DoctorError(f"file {source!r} is not text (accepted: {ACCEPTED})") from None
    if RUN_ID.fullmatch(source):
        return run_source(MlflowClient(existing_store(tracking_uri)), source)
    try:
        client, parent, _ = find(source, tracking_uri, experiment)
    except UsageError as e:
        raise DoctorError(f"{source!r} is none of: {ACCEPTED} ({e})") from None
    return search_source(client, parent)


def find(search: str, tracking_uri: str | None, experiment: str):
    """The report's lookup of a search by name or Ray folder."""
    return find_search(SimpleNamespace(search=search, tracking_uri=tracking_uri, experiment_name=experiment))


def text_source(text: str, where: str, config: Config | None) -> Source:
    history = parse(text, where, config)
    n = len(history.epochs)
    label = f"{where}: {n} debug {history.unit}{'s' if n > 1 else ''}"
    return Source(label, [Case(label, history)], Path(where).stem)


def run_source(client: MlflowClient, run_id: str) -> Source:
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise DoctorError(f"no MLflow run {run_id} at {client.tracking_uri} (accepted: {ACCEPTED})") from None
    if run.data.tags.get(SEARCH_ROLE[0]) == SEARCH_ROLE[1]:
        return search_source(client, run)
    history = read_run(client, run)
    if not history.series and not history.ended:  # a run that failed in its first epoch says why
        raise DoctorError(
            f"MLflow run {run_id} ({run.info.run_name}) has no metrics yet (accepted: a run that logged at "
            "least one epoch of train()'s validation metrics)"
        )
    label = f"MLflow run {run_id} ({run.info.run_name}, {run.info.status.lower()})"
    return Source(label, [Case(label, history, run_id)], run_id[:8])


def search_source(client: MlflowClient, parent: Run) -> Source:
    """A search's trials that a stop rule or ASHA stopped, or that failed, in the order they started."""
    trials = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    if not trials:
        raise DoctorError(f"search {parent.info.run_name!r} has no trials yet (accepted: {ACCEPTED})")
    cases = []
    for run in trials:
        reason = run.data.tags.get("stop_reason") or run.info.status.lower()
        if reason != COMPLETED or run.info.status != "FINISHED":
            trial = run.data.tags.get("trial_id", run.info.run_name)
            label = f"trial {trial} (run {run.info.run_id}): {reason}"
            cases.append(Case(label, read_run(client, run), run.info.run_id))
    label = (
        f"search {parent.info.run_name} (MLflow run {parent.info.run_id}): {len(cases)} of {len(trials)} "
        "trials stopped or failed"
    )
    return Source(label, cases, parent.info.run_name, search=True)


def checkpoint_source(folder: Path) -> Source:
    """A train_codec.py checkpoint folder: its MLflow run (named in mlflow_run.json) with the updates still
    waiting there for MLflow; where there is none or MLflow cannot be reached, what is on disk."""
    config = make_config(load_state(folder)["config"]) if (folder / LAST).exists() else None
    history, note = from_rows([]), ""
    if (folder / RUN_FILE).exists():
        state = read_state(folder / RUN_FILE)
        run_id = state["runs"].get(RUN)
        history = from_rows({**op[2], "epoch": op[3]} for op in state["pending"] if op[0] == "metrics")
        try:
            client = MlflowClient(state["tracking_uri"])
            logged = read_run(client, client.get_run(run_id)) if run_id else None
        except UNREACHABLE as e:
            logged, note = None, f"; MLflow run {run_id} not read ({one_line(e)})"
        if logged is not None:
            for key, values in history.series.items():  # the updates waiting are later epochs
                logged.series.setdefault(key, {}).update(values)
            history, note = logged, f", MLflow run {run_id}"
    if not history.series and not history.ended and (folder / "metrics.json").exists():
        history = from_rows([json.loads((folder / "metrics.json").read_text())])
        note += "; metrics.json holds its last epoch only (its MLflow run holds every epoch)"
    if not history.series and not history.ended:
        raise DoctorError(f"checkpoint folder {str(folder)!r} has no metrics yet (accepted: {ACCEPTED})")
    history.config = history.config or config
    label = f"checkpoint folder {folder}{note}"
    return Source(label, [Case(label, history)], folder.resolve().name)
