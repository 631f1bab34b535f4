"""MLflow logging shared by single runs and search trials: params, metrics, audio, plots, checkpoints."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tune_codec.config import Config
from tune_codec.train import BEST, SAMPLES

DEFAULT_DB = "mlflow.db"  # what `mlflow ui` opens when started in the same folder

logging.getLogger("alembic").setLevel(logging.WARNING)  # schema migration chatter on first use


def resolve_tracking_uri(uri: str | None) -> str:
    """An absolute URI: trials run in other working directories than the driver."""
    uri = uri or DEFAULT_DB
    if "://" not in uri:  # a plain path is a SQLite file
        return f"sqlite:///{Path(uri).resolve()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def config_params(config: Config) -> dict[str, str]:
    """Every config field plus what it implies (bitrate, compression), as MLflow params."""
    params = {
        k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
        for k, v in dataclasses.asdict(config).items()
    }
    params.update(
        bitrate_kbps=f"{config.bitrate / 1000:g}", compression=f"{config.compression:g}", hop=str(config.hop)
    )
    return params


class Tracker:
    """One MLflow experiment; runs are addressed by id so many trials can log at once."""

    def __init__(self, tracking_uri: str | None, experiment: str):
        self.uri = resolve_tracking_uri(tracking_uri)
        self.client = MlflowClient(self.uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = None
            if self.uri.startswith("sqlite:///"):  # artifacts beside the database, not in the cwd
                location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
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

    def finish(self, run_id: str, status: str = "FINISHED", tags: dict[str, str] | None = None) -> None:
        for k, v in (tags or {}).items():
            self.client.set_tag(run_id, k, v)
        self.client.set_terminated(run_id, status=status)
