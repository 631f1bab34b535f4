"""What a person watching a search reads: the project's own lines on the console (each trial's start with
its searched values, each epoch's metric, why it stopped, the best so far, progress against trials and
budget with an estimate) and each trial's full log in a file (what train_codec.py prints for a run).
Ray's own status table is off unless --verbose (the driver's RunConfig)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from datetime import datetime
from pathlib import Path

import optuna
from ray import tune

from tune_codec.cli import cell
from tune_codec.metrics import debug_block
from tune_codec.names import ASHA, COMPLETED, REASON, best_key, label
from tune_codec.search.cost import COST
from tune_codec.search.space import BITRATE, Space
from tune_codec.search.stopping import why_stopped
from tune_codec.search.trial import LOGS, error_line, log_file
from tune_codec.training.train import format_epoch


@contextlib.contextmanager
def quiet_libraries(quiet: bool):
    """Within: no Optuna INFO lines ("A new study created ...") and none of Ray Tune's output at verbose=0,
    when quiet: Ray 2.60's new output engine prints its experiment box and TensorBoard hint even at
    verbose=0, its legacy engine nothing; nor Tune's "Resume experiment with: Tuner.restore(...)" after
    Ctrl-C, where the search says how it continues (--resume). All are process-wide, so put back after."""
    if not quiet:
        yield
        return
    level, engine = optuna.logging.get_verbosity(), os.environ.get("RAY_AIR_NEW_OUTPUT")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    tune_log = logging.getLogger("ray.tune.tune")
    tune_log.addFilter(no_restore_hint)
    try:
        yield
    finally:
        tune_log.removeFilter(no_restore_hint)
        optuna.logging.set_verbosity(level)
        if engine is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT")
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = engine


def no_restore_hint(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Experiment has been interrupted")


def score_text(metric: str, value: float) -> str:
    """'SNR -2.08 dB', 'PESQ 1.52'."""
    name, _, unit = label(metric).partition(" ")
    return f"{name} {value:.2f}{' ' + unit if unit else ''}"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Console(tune.Callback):
    """Ray Tune callback: the search's lines on stdout, each trial's log in folder/logs/<trial id>.log.

    Progress is counted from the trials Tune hands every call (all of them, restored ones too), so a
    resumed search counts what it had done; its rate is this process's, measured from its first epoch.
    Tune calls on_trial_result before it stores the result as the trial's last, and on_trial_complete
    while the trial is still RUNNING: the counts here allow for both."""

    def __init__(self, space: Space, folder: Path, budget_hours: float | None = None):
        self.space, self.folder, self.budget_hours = space, folder, budget_hours

    def __getstate__(self):  # pickled with the Tuner's state: the settings, not this process's clock
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def setup(self, **info) -> None:
        self._start = time.monotonic()
        self._first: float | None = None  # when this process's first epoch came in
        self._epochs = 0  # epochs that came in after it
        self._shown: dict[str, dict] = {}  # trial id -> the searched values last printed
        (self.folder / LOGS).mkdir(parents=True, exist_ok=True)
        space = self.space
        what = " and ".join(space.objectives) if space.objectives else space.metric
        at_once, epochs = min(space.concurrency, space.trials), space.base.num_epochs
        self.say(
            f"search: {space.trials} trials, {at_once} at once, up to {epochs} epochs each, ranked on "
            f"{what}; each trial's log: {self.folder / LOGS}/<trial>.log"
        )

    def say(self, line: str) -> None:
        elapsed = int(time.monotonic() - self._start)
        print(f"[{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}] {line}", flush=True)

    def log(self, trial, text: str) -> None:
        with open(log_file(self.folder, trial.trial_id), "a") as f:
            f.write(text.rstrip("\n") + "\n")

    def searched(self, trial) -> dict:
        return {k: trial.config[k] for k in self.space.searched() if k in trial.config}

    def values_text(self, values: dict) -> str:
        return ", ".join(f"{k} {cell(v)}" for k, v in values.items())

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        values, shown = self.searched(trial), self._shown.get(trial.trial_id)
        now = datetime.now().isoformat(timespec="seconds")
        if shown is None and not log_file(self.folder, trial.trial_id).exists():
            self.say(f"trial {trial.trial_id} started: {self.values_text(values)}")
            config = "\n".join(f"  {k}: {v}" for k, v in sorted(trial.config.items()))
            self.log(trial, f"trial {trial.trial_id} started {now}\nconfig:\n{config}")
        elif shown is None:  # a resumed search's trial
            self.say(f"trial {trial.trial_id} goes on from its last checkpoint: {self.values_text(values)}")
            self.log(trial, f"{now}: the search resumed; goes on from its last checkpoint")
        elif shown != values:  # a population's trial perturbed, or copying another's checkpoint
            self.say(f"trial {trial.trial_id} goes on with {self.values_text(values)}")
            self.log(trial, f"{now}: goes on with {self.values_text(values)}")
        else:  # retried after an error, or a paused population member let in again
            self.log(trial, f"{now}: goes on from its last checkpoint")
        self._shown[trial.trial_id] = values

    on_trial_restore = on_trial_start

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self._first is None:
            self._first = time.monotonic()
        else:
            self._epochs += 1
        epoch, metric = int(result["epoch"]), self.space.metric
        line = f"trial {trial.trial_id} epoch {epoch}/{trial.config['num_epochs']}: "
        if "val/range_ratio" not in result:  # a non-finite loss: the trial reports only why it stops
            self.say(line + result.get(REASON, ""))
            self.log(trial, f"epoch {epoch}: {result.get(REASON, '')}")
            return
        if metric in result:
            line += f"{score_text(metric, result[metric])} (its best {result[best_key(metric)]:.2f}), "
        else:  # a PESQ that found no speech this epoch
            line += f"no {metric}, "
        self.say(line + f"range ratio {result['val/range_ratio']:.2f}")
        self.log(trial, f"{format_epoch(result)}\n{debug_block(result)}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        epochs, planned = int(last.get("epoch", 0)), trial.config["num_epochs"]
        reason = why_stopped(last, planned)
        if reason == COMPLETED:
            how = f"completed its {epochs} epochs"
        elif reason.startswith(ASHA):
            how = f"stopped by ASHA at epoch {epochs} of {planned}: it trailed the others there"
        else:
            how = f"stopped at epoch {epochs} of {planned}: {reason}"
        metric = self.space.metric
        if metric in last and best_key(metric) in last:
            how += f"; {score_text(metric, last[metric])}, its best {last[best_key(metric)]:.2f}"
        self.say(f"trial {trial.trial_id} {how}")
        self.log(trial, f"trial {trial.trial_id} {how}")
        self.progress(trials, trial)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        error = error_line(trial)
        self.say(f"trial {trial.trial_id} lost its worker ({error}); retried from its last checkpoint")
        self.log(trial, f"error, retried from the last checkpoint:\n{self.error_text(trial)}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        path = log_file(self.folder, trial.trial_id)
        self.say(f"trial {trial.trial_id} failed: {error_line(trial)} (its log: {path})")
        self.log(trial, f"failed:\n{self.error_text(trial)}")
        self.progress(trials, trial)

    def error_text(self, trial) -> str:
        error_file = trial.error_file and Path(trial.error_file)
        return error_file.read_text() if error_file and error_file.exists() else error_line(trial)

    def epochs_done(self, trials) -> int:
        return sum(int((t.last_result or {}).get("epoch", 0)) for t in trials)

    def progress(self, trials, ending) -> None:
        """The best healthy trial so far, then trials, epochs and budget done, and the time left at most
        (ASHA and the collapse stoppers may leave less), as `ending` finishes."""
        metric, key = self.space.metric, best_key(self.space.metric)
        healthy = [t for t in trials if key in (t.last_result or {}) and not t.last_result.get(REASON)]
        if healthy:
            best = max(healthy, key=lambda t: t.last_result[key])
            at = f" at {best.last_result[BITRATE]:g} kbps" if self.space.objectives else ""
            score, values = score_text(metric, best.last_result[key]), self.values_text(self.searched(best))
            self.say(f"best so far: trial {best.trial_id}, best {score}{at} ({values})")
        over = [t for t in trials if t is ending or t.status in ("TERMINATED", "ERROR")]
        running = sum(t.status == "RUNNING" for t in trials if t not in over)
        done = self.epochs_done(trials)
        unseen = max(self.space.trials - len(trials), 0) * self.space.base.num_epochs
        left = unseen + sum(
            t.config["num_epochs"] - int((t.last_result or {}).get("epoch", 0))
            for t in trials
            if t not in over
        )
        line = f"progress: {len(over)} of {self.space.trials} trials done, {running} running; {done} epochs"
        line += f" of at most {done + left}"
        seconds = math.inf
        if self._epochs:
            seconds = left * (time.monotonic() - self._first) / self._epochs
        if self.budget_hours is not None:
            spent = sum((t.last_result or {}).get(COST, 0.0) for t in trials)
            line += f"; budget {spent:.3g} of {self.budget_hours:g} device-hours"
            elapsed = time.monotonic() - self._start
            if spent > 0:  # no new trial once it is spent: time to spend the rest at the rate so far
                seconds = min(seconds, max(self.budget_hours - spent, 0) * elapsed / spent)
        if math.isfinite(seconds) and left:
            line += f"; at most about {duration(seconds)} left"
        self.say(line)
