"""What Tune calls and hears: the trainable, the MLflow callback, the budget searcher, the sampler."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import optuna
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tune_codec.config import for_model, make_config
from tune_codec.data.segments import CodecData
from tune_codec.names import NON_FINITE, REASON, SCORE
from tune_codec.search.cost import COST
from tune_codec.search.stopping import StopRules, judge, why_stopped
from tune_codec.tracking import SEARCH, Outbox, Tracker, config_params, one_line, read_state, write_state
from tune_codec.training.train import train

TRIAL_ATTR = "ray_trial_id"  # an Optuna trial's user attribute: the Tune trial (and MLflow run) it is
LOGS = "logs"  # in the search's folder: each trial's log as <trial id>.log, written by console.py
HELD_FILE = "held.json"  # in a trial's checkpoint: seconds it held its devices, carried over a restore


def trial(
    config: dict, data: CodecData, rules: StopRules, metric: str, devices: float, checkpoint_every: int = 1
) -> None:
    """One trial: train() with Tune's report and checkpoints (every checkpoint_every epochs, and the last);
    a non-finite loss is reported as a stop. Each report carries the device-hours this trial has held so
    far (cost.py), kept in its trial folder and its checkpoints: Population Based Training restores a trial
    from another trial's checkpoint."""
    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tune-codec-trial-"))
    context = tune.get_context()
    me, own = context.get_trial_id(), Path(context.get_trial_dir()) / HELD_FILE
    resume, held_before = None, 0.0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            shutil.copytree(folder, workdir, dirs_exist_ok=True)
        resume = workdir
        held = json.loads((workdir / HELD_FILE).read_text())
        held_before = held["held_s"] if held.get("trial_id") == me else 0.0
    if own.exists():  # restarted on the node it ran on: its own count, whichever checkpoint it took
        held_before = json.loads(own.read_text())["held_s"]

    reached = {"epoch": 0}

    def held_s() -> float:
        return held_before + time.monotonic() - start

    def report(metrics: dict, checkpoint_dir: Path) -> None:
        reached["epoch"] = metrics["epoch"]
        seconds = held_s()
        for path in (checkpoint_dir / HELD_FILE, own):
            path.write_text(json.dumps({"trial_id": me, "held_s": seconds}))
        epoch = metrics["epoch"]
        kept = epoch % checkpoint_every == 0 or epoch == config["num_epochs"]
        tune.report(
            {**judge(metrics, rules, metric), COST: seconds * devices / 3600},
            checkpoint=tune.Checkpoint.from_directory(checkpoint_dir) if kept else None,
        )

    try:
        train(
            make_config(config),
            data,
            report,
            checkpoint_dir=workdir,
            resume_from=resume,
            quiet=True,
        )
    except FloatingPointError as e:
        verdict = {"epoch": reached["epoch"] + 1, REASON: str(e), SCORE: rules.penalty_db}
        tune.report({**verdict, COST: held_s() * devices / 3600})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """Optuna's sampler. TPE proposes its first n_startup_trials at random; Optuna's default of 10 would
    leave a search of 8 trials entirely random."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, trials // 4)))


class BudgetSearch(OptunaSearch):
    """OptunaSearch that proposes nothing once the trials' device-hours reach the budget: Tune then launches
    no new trial and lets the running ones finish (a Stopper's stop_all would kill them). A single objective
    is told its trial's best epoch, not its last: what the trial's best.pt holds and the summary ranks."""

    def __init__(self, budget_hours: float | None, **kwargs):
        super().__init__(**kwargs)
        self.budget_hours = budget_hours
        self.spent: dict[str, float] = {}  # trial id -> device-hours so far; saved with the searcher

    @property
    def best(self) -> dict[str, float]:
        """trial id -> its best score so far, saved with the searcher (empty in one saved before this)"""
        return self.__dict__.setdefault("_best", {})

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.spent[trial_id] = result.get(COST, 0.0)
        if isinstance(self.metric, str) and (value := result.get(self.metric)) is not None:
            better = max if self.mode == "max" else min
            self.best[trial_id] = better(value, self.best.get(trial_id, value))
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """A trial a stop rule ended keeps the penalty its last result carries, so TPE learns to avoid it."""
        if result and not result.get(REASON) and trial_id in self.best:
            result = {**result, self.metric: self.best[trial_id]}
        super().on_trial_complete(trial_id, result, error)

    def suggest(self, trial_id: str):
        if self.budget_hours is not None and sum(self.spent.values()) >= self.budget_hours:
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        if isinstance(config, dict):  # the size fields of the models it did not choose do nothing
            config = for_model(config)
        if (
            trial_id in self._ot_trials
        ):  # leads from the study (optuna-dashboard) to the Tune trial and its run
            self._ot_trials[trial_id].set_user_attr(TRIAL_ATTR, trial_id)
        return config

    def restore(self, checkpoint_path: str) -> None:
        """The searcher as Tune last saved it, reconciled with its study's storage, which a killed driver
        may have written to after that save: a trial the storage has finished is not told again (Optuna
        refuses that), and one asked for after the save, which no Tune trial will finish, is failed
        instead of staying RUNNING in the study forever."""
        super().restore(checkpoint_path)
        study = self._ot_study
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        known = {ot.number: trial_id for trial_id, ot in self._ot_trials.items()}
        for number, trial_id in known.items():
            if by_number[number].state.is_finished():
                self._completed_trials.add(trial_id)
        for number, frozen in by_number.items():
            if number not in known and frozen.state == optuna.trial.TrialState.RUNNING:
                study.tell(number, state=optuna.trial.TrialState.FAIL)


class MlflowTrials(tune.Callback):
    """Ray Tune callback: one MLflow child run per trial under the search's parent run.

    The state (run ids, epochs logged, updates MLflow has not taken yet) lives in a JSON file beside
    the Ray experiment, so a resumed search continues the same runs and logs each epoch once (Ray's
    MLflowLoggerCallback opens new runs and leaves the old ones RUNNING), and an MLflow outage costs
    no trial: updates wait in the file until MLflow is back."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        experiment_id: str,
        state_file: Path,
        folder: Path | None = None,
    ):
        self.uri, self.experiment, self.experiment_id = tracking_uri, experiment, experiment_id
        self.state_file = state_file
        self.folder = folder  # the search's, for the trials' logs

    @property
    def outbox(self) -> Outbox:
        if "_outbox" not in self.__dict__:
            tracker = Tracker(self.uri, self.experiment, self.experiment_id)
            self._outbox = Outbox(tracker, read_state(self.state_file))
        return self._outbox

    def __getstate__(self):  # pickled with the Tuner's state: keep the settings, not the client
        return {k: v for k, v in self.__dict__.items() if k not in ("_outbox", "_seen_all")}

    def on_step_begin(self, iteration, trials, **info) -> None:
        """Once, with every trial Tune knows (all restored ones on a resume): a run opened for a trial
        that Tune never saved, before the driver was killed, belongs to no trial, so it is deleted."""
        if self.__dict__.get("_seen_all"):
            return
        self._seen_all = True
        known = {trial.trial_id for trial in trials}
        state = self.outbox.state
        for trial_id in [t for t in state["logged"] if t not in known]:
            del state["logged"][trial_id]
            state["done"] = [t for t in state["done"] if t != trial_id]
            self.outbox.send("delete", trial_id)
        write_state(self.state_file, self.outbox.state)

    def send(self, op: str, trial, *args) -> None:
        self.outbox.send(op, trial.trial_id, *args)
        write_state(self.state_file, self.outbox.state)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        logged = self.outbox.state["logged"]
        if trial.trial_id in logged:  # restored after a crash or an interruption
            self.send("reopen", trial)
            return
        logged[trial.trial_id] = 0
        params = config_params(make_config(trial.config))
        name = f"{self.outbox.state['name']}/{trial.trial_id}"
        self.send("start", trial, name, params, {"trial_id": trial.trial_id}, SEARCH)

    on_trial_restore = on_trial_start

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        epoch = int(result.get("epoch", 0))
        logged = self.outbox.state["logged"]
        if epoch <= logged.get(trial.trial_id, 0):  # replayed from a checkpoint older than the log
            return
        logged[trial.trial_id] = epoch
        metrics = {k: v for k, v in result.items() if "/" in k or k == "epoch"}
        self.send("metrics", trial, metrics, epoch)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.send("tags", trial, {"retries": str(trial.num_failures), "last_error": error_line(trial)})

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        reason = (trial.last_result or {}).get(REASON) or ""
        self.close(trial, "FAILED" if reason.startswith(NON_FINITE) else "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.close(trial, "FAILED", f"error: {error_line(trial)}")

    def close(self, trial, status: str, reason: str | None = None) -> None:
        if trial.checkpoint is not None:
            self.send("checkpoint", trial, trial.checkpoint.path)
        # complete by now: the console callback, before this one, has written the trial's last line
        log = self.__dict__.get("folder") and log_file(
            self.folder, trial.trial_id
        )  # searches before logs: none
        if log and log.exists():
            self.send("artifact", trial, str(log))
        reason = reason or why_stopped(trial.last_result or {}, trial.config["num_epochs"])
        state = self.outbox.state
        state["done"] = sorted({*state["done"], trial.trial_id})  # saved with the finish below
        self.send("finish", trial, status, {"stop_reason": reason})


def log_file(folder: Path, trial_id: str) -> Path:
    return folder / LOGS / f"{trial_id}.log"


def error_line(trial) -> str:
    """The last line of a trial's latest error: the exception and its message, or why its worker died.
    Read from the driver's copy of the error log, which Ray syncs to storage only later."""
    error_file = trial.error_file and Path(trial.error_file)
    text = error_file.read_text() if error_file and error_file.exists() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else "see the Ray trial log"
