"""MLflow logging shared by single runs and search trials: params, metrics, audio, plots, checkpoints."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import requests
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from tune_codec.config import Config, flag_text
from tune_codec.errors import UsageError
from tune_codec.files import atomic_write
from tune_codec.names import BEST, SAMPLES

DEFAULT_DB = "mlflow.db"  # what `mlflow ui` opens when started in the same folder
DEFAULT_EXPERIMENT = "tune-codec"
FINAL_WAIT_S = 60.0  # at the end of a run or search, how long to wait for an unreachable MLflow
# MLflow's own environment variables, honoured between a flag and the default as MLflow does
URI_HELP = f"MLflow tracking URI or SQLite file (default: $MLFLOW_TRACKING_URI, else ./{DEFAULT_DB})"
EXPERIMENT_HELP = f"MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else {DEFAULT_EXPERIMENT})"

logging.getLogger("alembic").setLevel(logging.WARNING)  # schema migration chatter on first use
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial ... tables"
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # a line per retry while MLflow is down

# MLflow's HTTP client retries a dead server for minutes per call (7 tries, doubling waits); a search's
# driver must not stall its trials that long, so it gives up fast and keeps the update for later.
QUICK_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
UNREACHABLE = (MlflowException, OSError, requests.RequestException)  # and RestException: MLflow said no


def one_line(error: BaseException | str) -> str:
    """The gist of an error in one line: the innermost OS error it mentions, or its first line."""
    if os_errors := re.findall(r"\[Errno -?\d+\] [^'\")\[\]\n]+", str(error), flags=re.IGNORECASE):
        return os_errors[-1].strip()
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def resolve_tracking_uri(uri: str | None) -> str:
    """The flag, else $MLFLOW_TRACKING_URI, else ./mlflow.db, made absolute: trials run in other working
    directories than the driver."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_DB
    if "://" not in uri:  # a plain path is a SQLite file
        return f"sqlite:///{Path(uri).resolve()}"
    db = sqlite_file(uri)
    return f"sqlite:///{db.resolve()}" if db and not db.is_absolute() else uri


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def experiment_name(name: str | None) -> str:
    """The flag, else $MLFLOW_EXPERIMENT_NAME, else tune-codec."""
    return name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def config_params(config: Config) -> dict[str, str]:
    """Every config field plus what it implies (bitrate, compression), as MLflow params."""
    params = {k: flag_text(v) for k, v in dataclasses.asdict(config).items()}
    params.update(
        bitrate_kbps=f"{config.bitrate / 1000:g}", compression=f"{config.compression:g}", hop=str(config.hop)
    )
    return params


class Tracker:
    """One MLflow experiment; runs are addressed by id so many trials can log at once."""

    def __init__(self, tracking_uri: str | None, experiment: str, experiment_id: str | None = None):
        """Finds or creates the experiment unless its id is given (which needs no round trip)."""
        self.uri = resolve_tracking_uri(tracking_uri)
        self.client = MlflowClient(self.uri)
        found = None if experiment_id else self.client.get_experiment_by_name(experiment)
        if experiment_id:
            self.experiment_id = experiment_id
        elif found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = None
            if db := sqlite_file(self.uri):  # artifacts beside the database, not in the cwd
                location = (db.parent / "mlartifacts").as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)

    def start(
        self, name: str, params: dict[str, str], tags: dict[str, str] | None = None, parent: str | None = None
    ) -> str:
        tags = dict(tags or {})
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        return run_id

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def log_metrics(self, run_id: str, metrics: dict, step: int) -> None:
        ms = [Metric(k, float(v), 0, step) for k, v in metrics.items() if isinstance(v, int | float)]
        self.client.log_batch(run_id, metrics=ms)

    def log_checkpoint(self, run_id: str, checkpoint_dir: Path) -> None:
        """The validation clips, the waveform plot and the best checkpoint."""
        checkpoint_dir = Path(checkpoint_dir)
        if (checkpoint_dir / SAMPLES).is_dir():
            self.client.log_artifacts(run_id, str(checkpoint_dir / SAMPLES), SAMPLES)
        if (checkpoint_dir / BEST).exists():
            self.client.log_artifact(run_id, str(checkpoint_dir / BEST), "checkpoint")

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)

    def finish(self, run_id: str, status: str = "FINISHED", tags: dict[str, str] | None = None) -> None:
        self.set_tags(run_id, tags or {})
        self.client.set_terminated(run_id, status=status)


class Outbox:
    """MLflow updates to runs named by key, sent in order, and kept while MLflow cannot take them.

    `state` is a JSON-able dict the caller persists: {"runs": {key: run_id}, "pending": [[op, key, ...]]},
    so updates queued when the process dies are sent by the next one. An update MLflow refuses outright
    (it answered, with an error) is not retried; it is listed in `refused`."""

    RETRY_S = 10.0  # while MLflow is down, try again at most this often

    def __init__(self, tracker: Tracker, state: dict):
        self.tracker, self.state = tracker, state
        state.setdefault("runs", {})
        state.setdefault("pending", [])
        self.refused: list[str] = []
        self.carried = len(state["pending"])  # queued by an earlier process while MLflow was away
        self.down_since: float | None = None
        self.next_try = 0.0

    def run_id(self, key: str) -> str | None:
        return self.state["runs"].get(key)

    def send(self, op: str, key: str, *args) -> None:
        """Queue one update: start (name, params, tags, parent key), reopen, metrics (metrics, step),
        tags (tags), checkpoint (folder), text (text, file name), artifact (path),
        finish (status, tags), delete."""
        self.state["pending"].append([op, key, *args])
        self.flush()

    def flush(self, wait_s: float = 0.0) -> bool:
        """Send what is queued; True when nothing is left. Keeps trying for up to wait_s seconds."""
        deadline = time.monotonic() + wait_s
        while True:
            if self._send_pending():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(self.RETRY_S, max(deadline - time.monotonic(), 0)))
            self.next_try = 0.0

    def _send_pending(self) -> bool:
        pending = self.state["pending"]
        if pending and time.monotonic() < self.next_try:
            return False
        while pending:
            op, key, *args = pending[0]
            try:
                self._apply(op, key, *args)
            except (RestException, LookupError) as e:  # MLflow answered no: it would again
                self.refused.append(f"{op} {key}: {one_line(e)}")
                print(f"mlflow: refused {op} for {key}: {one_line(e)}", file=sys.stderr)
            except UNREACHABLE as e:
                if self.down_since is None:
                    self.down_since = time.monotonic()
                    print(
                        f"mlflow: {self.tracker.uri} unreachable ({one_line(e)}); training goes on and "
                        "updates are kept until it is back",
                        file=sys.stderr,
                    )
                self.next_try = time.monotonic() + self.RETRY_S
                return False
            pending.pop(0)
        if self.down_since is not None:
            print(
                f"mlflow: {self.tracker.uri} back after {time.monotonic() - self.down_since:.0f} s; "
                "queued updates sent",
                file=sys.stderr,
            )
            self.down_since = None
        elif self.carried:
            uri, n = self.tracker.uri, self.carried
            print(f"mlflow: {uri} reachable; {n} queued updates sent", file=sys.stderr)
        self.carried = 0
        return True

    def _apply(self, op: str, key: str, *args) -> None:
        t, run_id = self.tracker, self.run_id(key)
        if op == "start":
            name, params, tags, parent = args
            self.state["runs"][key] = t.start(name, params, tags, self.run_id(parent) if parent else None)
            return
        if run_id is None:  # its start was refused
            raise LookupError(f"no MLflow run for {key}")
        {
            "reopen": t.reopen,
            "tags": t.set_tags,
            "metrics": t.log_metrics,
            "checkpoint": lambda run, folder: t.log_checkpoint(run, Path(folder)),
            "text": t.client.log_text,
            "artifact": t.client.log_artifact,
            "finish": t.finish,
            "delete": t.client.delete_run,
        }[op](run_id, *args)


def quick_http() -> None:
    """Short MLflow HTTP retries for this process, unless the user set their own."""
    for k, v in QUICK_HTTP.items():
        os.environ.setdefault(k, v)


def check_reachable(uri: str) -> None:
    """One cheap round trip; a UsageError naming the URI when MLflow cannot be reached. MLflow creates
    a SQLite store's tables on first use, and runs started at once on a new file race to create them
    (sqlite3.OperationalError: duplicate column name): the first round trip holds a lock on the file."""
    db = sqlite_file(uri)
    with open(db, "ab") if db and db.parent.is_dir() else contextlib.nullcontext() as held:
        if held:
            fcntl.flock(held, fcntl.LOCK_EX)  # released when the file is closed
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except UNREACHABLE as e:
            raise UsageError(f"cannot reach MLflow at {uri}: {one_line(e)}") from None


SEARCH = "search"  # the parent run's key in a search's state
# a single run's MLflow id and the updates MLflow has not taken yet (an Outbox's state), kept with its
# checkpoints, so --resume continues the same run and an MLflow outage costs no update
RUN_FILE = "mlflow_run.json"
RUN = "run"  # the run's key in that state


def state_path(folder: Path) -> Path:
    """A search's MLflow state, beside (not inside) its Ray experiment folder: on restore Ray syncs its
    folder from a staging copy and would put back a stale file."""
    return folder.with_name(f"{folder.name}.mlflow_runs.json")


def read_state(path: Path) -> dict:
    """An Outbox's state as saved by write_state. A search's also has "name", "logged" {trial id: last
    epoch logged}, "done" [trial ids closed] and "finished"; its parent run's key is SEARCH."""
    return json.loads(path.read_text())


def write_state(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(state, indent=1)))


def deliver(outbox: Outbox, state_file: Path, code: int, how_to_send: str, prog: str) -> int:
    """Send what MLflow has not taken yet, waiting a while for it; say clearly what could not be sent.
    Returns code, or at least 1 when updates are left or were refused."""
    sent = outbox.flush(wait_s=FINAL_WAIT_S)
    try:
        write_state(state_file, outbox.state)
    except OSError as e:  # what was sent is in MLflow; what was not is listed below
        print(f"{prog}: cannot save {state_file} ({one_line(e)})", file=sys.stderr)
    if not sent:
        print(
            f"mlflow: {outbox.tracker.uri} still unreachable; {len(outbox.state['pending'])} updates "
            f"not logged yet are kept in {state_file}; send them {how_to_send}",
            file=sys.stderr,
        )
    if outbox.refused:
        print(f"mlflow: {len(outbox.refused)} updates refused: {'; '.join(outbox.refused)}", file=sys.stderr)
    return code if sent and not outbox.refused else max(code, 1)
