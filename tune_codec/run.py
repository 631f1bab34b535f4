"""The search: python -m tune_codec.run --space search_spaces/amplitude.yaml [--address auto] ..."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import optuna
import ray
import yaml
from ray import tune
from ray.tune.error import TuneError
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tune_codec.cli import parse
from tune_codec.config import Config, make_config, to_flags
from tune_codec.cost import (
    COST,
    Budget,
    check_price,
    describe_budget,
    describe_cost,
    held_devices,
    parse_budget,
)
from tune_codec.data import CodecData, load_data
from tune_codec.model import Codec
from tune_codec.resume import repair_checkpoints
from tune_codec.space import Space, load_space
from tune_codec.stopping import REASON, SCORE, CollapseStopper, StopRules, judge
from tune_codec.tracking import (
    EXPERIMENT_HELP,
    SEARCH,
    URI_HELP,
    Outbox,
    Tracker,
    check_reachable,
    config_params,
    deliver,
    experiment_name,
    one_line,
    quick_http,
    read_state,
    resolve_tracking_uri,
    state_path,
    write_state,
)
from tune_codec.train import N_CLIPS, train

PROG = "python -m tune_codec.run"
RESEND = "by running the same command with --resume"  # how a search's queued MLflow updates are sent
BEST_FILE = "best_config.yaml"
HELD_FILE = "held.json"  # in a trial's checkpoint: seconds it held its devices, carried over a restore


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Search a codec's loss weights and learning rate: Ray Tune + Optuna, logged to MLflow.",
    )
    p.add_argument("--space", type=Path, required=True, help="search-space YAML (see search_spaces/)")
    p.add_argument("--data-dir", type=Path, help="folder of audio files (default: bundled demo corpus)")
    p.add_argument("--trials", type=int, help="number of trials (default: the space's `trials`)")
    p.add_argument("--concurrency", type=int, help="trials at once (default: the space's `concurrency`)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default: 1)")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="GPUs per trial; fractions share a GPU, e.g. 0.5 (default: 0)",
    )
    p.add_argument(
        "--storage-path", type=Path, default=Path("ray_results"), help="Ray results (default: ./ray_results)"
    )
    p.add_argument(
        "--name", help="search name: Ray experiment and MLflow parent run (default: space file name)"
    )
    p.add_argument("--experiment-name", help=EXPERIMENT_HELP)
    p.add_argument("--tracking-uri", help=URI_HELP)
    p.add_argument("--seed", type=int, default=0, help="Optuna sampler seed (default: 0)")
    p.add_argument(
        "--sampler",
        choices=("tpe", "random"),
        default="tpe",
        help="how Optuna proposes trials: tpe learns from the finished ones after a few random ones "
        "(a quarter of the trials, 2 to 10); random never does (default: tpe)",
    )
    p.add_argument(
        "--address",
        help="existing Ray cluster, e.g. auto, 127.0.0.1:6379 or ray://host:10001 "
        "(default: $RAY_ADDRESS, else start Ray here)",
    )
    p.add_argument("--resume", action="store_true", help="continue the interrupted search of the same name")
    p.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="times a trial that crashed (lost worker, out of memory) is retried from its last checkpoint "
        "(default: 2)",
    )
    p.add_argument("--cache-dir", type=Path, help="decoded-audio cache (default: ~/.cache/tune-codec)")
    p.add_argument(
        "--price-per-gpu-hour",
        type=float,
        help="dollars per device-hour (a GPU-hour; a CPU-hour when trials hold no GPU), for the cost lines",
    )
    p.add_argument(
        "--budget",
        help="launch no new trial once the trials' device-hours reach this: 2h, or 5usd with a price",
    )
    args = parse(p, argv)
    args.experiment_name = experiment_name(args.experiment_name)
    args.address = args.address or os.environ.get("RAY_ADDRESS")  # as ray.init() does; ray job submit sets it
    return args


def check_args(args, space: Space) -> tuple[Space, Path]:
    """The space with the command line's overrides, and the experiment folder; ValueError if unusable."""
    for flag in ("trials", "concurrency"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} {value} must be >= 1")
    if args.max_failures < 0:
        raise ValueError(f"--max-failures {args.max_failures} must be >= 0")
    for flag in ("cpus_per_trial", "gpus_per_trial"):
        value = getattr(args, flag)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"--{flag.replace('_', '-')} {value} must be >= 0")
    check_price(args.price_per_gpu_hour)
    args.budget = parse_budget(args.budget, args.price_per_gpu_hour) if args.budget else None
    space = dataclasses.replace(
        space, trials=args.trials or space.trials, concurrency=args.concurrency or space.concurrency
    )
    folder = (args.storage_path / (args.name or args.space.stem)).resolve()
    exists = state_path(folder).exists()
    if args.resume and not exists:
        raise ValueError(f"--resume: no search to continue in {str(folder)!r}")
    if exists and not args.resume:
        raise ValueError(
            f"{str(folder)!r} already holds a search; pass --resume to continue it or --name for a new one"
        )
    if args.resume:  # the restored searcher keeps the budget, sampler and seed it started with
        saved = read_state(state_path(folder))
        for flag, given, started in (
            ("--budget", args.budget and args.budget.text, saved.get("budget")),
            ("--price-per-gpu-hour", args.price_per_gpu_hour, saved.get("price_per_gpu_hour")),
            ("--sampler", args.sampler, saved.get("sampler", args.sampler)),  # states before --sampler
            ("--seed", args.seed, saved.get("seed", args.seed)),
        ):
            if given != started:
                raise ValueError(f"{flag} {given}: the search was started with {started}; a resume keeps it")
    return space, folder


def start_ray(args) -> bool:
    """Connect to --address, or start Ray here unless it already runs in this process; True if started."""
    started = not ray.is_initialized()
    if started and args.address:  # a cluster's own settings (CPUs, object store) are its own
        ray.init(address=args.address, log_to_driver=False)
    elif started:  # light settings for a laptop
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(
            address="local",  # a new Ray here, even where `ray start` runs (--address auto joins that)
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            object_store_memory=200 * 2**20,
            log_to_driver=False,
        )
    have = ray.cluster_resources()
    if args.address:
        nodes = sum(node["Alive"] for node in ray.nodes())
        cpus, gpus = have.get("CPU", 0), have.get("GPU", 0)
        print(f"ray: joined {args.address}: {nodes} nodes, {cpus:g} CPUs, {gpus:g} GPUs")
    for name, want in (("CPU", args.cpus_per_trial), ("GPU", args.gpus_per_trial)):
        if want > have.get(name, 0):
            if started:
                ray.shutdown()
            raise ValueError(
                f"--{name.lower()}s-per-trial {want:g}: the Ray cluster has {have.get(name, 0):g} {name}s "
                "(a trial asking for more would wait forever)"
            )
    return started


def trial(config: dict, data: CodecData, rules: StopRules, metric: str, devices: float) -> None:
    """One trial: train() with Tune's report and checkpoints; a non-finite loss is reported as a stop.
    Each report carries the device-hours held so far (cost.py)."""
    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tune-codec-trial-"))
    resume, held_before = None, 0.0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            shutil.copytree(folder, workdir, dirs_exist_ok=True)
        resume = workdir
        held_before = json.loads((workdir / HELD_FILE).read_text())["held_s"]

    reached = {"epoch": 0}

    def held_s() -> float:
        return held_before + time.monotonic() - start

    def report(metrics: dict, checkpoint_dir: Path) -> None:
        reached["epoch"] = metrics["epoch"]
        held = held_s()
        (checkpoint_dir / HELD_FILE).write_text(json.dumps({"held_s": held}))
        tune.report(
            {**judge(metrics, rules, metric), COST: held * devices / 3600},
            checkpoint=tune.Checkpoint.from_directory(checkpoint_dir),
        )

    try:
        train(
            make_config(config),
            data,
            report,
            checkpoint_dir=workdir,
            resume_from=resume,
            progress=False,
            echo=_quiet,
        )
    except FloatingPointError as e:
        verdict = {"epoch": reached["epoch"] + 1, REASON: str(e), SCORE: rules.penalty_db}
        tune.report({**verdict, COST: held_s() * devices / 3600})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _quiet(_: str) -> None:
    pass


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """Optuna's sampler. TPE proposes its first n_startup_trials at random; Optuna's default of 10 would
    leave a search of 8 trials entirely random."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, trials // 4)))


class BudgetSearch(OptunaSearch):
    """OptunaSearch that proposes nothing once the trials' device-hours reach the budget: Tune then launches
    no new trial and lets the running ones finish (a Stopper's stop_all would kill them)."""

    def __init__(self, budget_hours: float | None, **kwargs):
        super().__init__(**kwargs)
        self.budget_hours = budget_hours
        self.spent: dict[str, float] = {}  # trial id -> device-hours so far; saved with the searcher

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.spent[trial_id] = result.get(COST, 0.0)
        super().on_trial_result(trial_id, result)

    def suggest(self, trial_id: str):
        if self.budget_hours is not None and sum(self.spent.values()) >= self.budget_hours:
            return Searcher.FINISHED
        return super().suggest(trial_id)


class MlflowTrials(tune.Callback):
    """Ray Tune callback: one MLflow child run per trial under the search's parent run.

    The state (run ids, epochs logged, updates MLflow has not taken yet) lives in a JSON file beside
    the Ray experiment, so a resumed search continues the same runs and logs each epoch once (Ray's
    MLflowLoggerCallback opens new runs and leaves the old ones RUNNING), and an MLflow outage costs
    no trial: updates wait in the file until MLflow is back."""

    def __init__(self, tracking_uri: str, experiment: str, experiment_id: str, state_file: Path):
        self.uri, self.experiment, self.experiment_id = tracking_uri, experiment, experiment_id
        self.state_file = state_file

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
        self.close(trial, "FAILED" if reason.startswith("non-finite") else "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.close(trial, "FAILED", f"error: {error_line(trial)}")

    def close(self, trial, status: str, reason: str | None = None) -> None:
        if trial.checkpoint is not None:
            self.send("checkpoint", trial, trial.checkpoint.path)
        reason = reason or why_stopped(trial.last_result or {}, trial.config["num_epochs"])
        state = self.outbox.state
        state["done"] = sorted({*state["done"], trial.trial_id})  # saved with the finish below
        self.send("finish", trial, status, {"stop_reason": reason})


def error_line(trial) -> str:
    """The last line of a trial's latest error: the exception and its message, or why its worker died.
    Read from the driver's copy of the error log, which Ray syncs to storage only later."""
    error_file = trial.error_file and Path(trial.error_file)
    text = error_file.read_text() if error_file and error_file.exists() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else "see the Ray trial log"


def why_stopped(last: dict, num_epochs: int) -> str:
    """The stopper's reason, ASHA's early stop, or 'completed'."""
    epochs = int(last.get("epoch", 0))
    if last.get(REASON):
        return last[REASON]
    return f"ASHA after {epochs} epochs" if epochs < num_epochs else "completed"


def is_useful(stop_reason: str) -> bool:
    """A trial that trained to its end or until ASHA stopped it: not collapsed, not failed."""
    return stop_reason == "completed" or stop_reason.startswith("ASHA after")


def main(argv=None) -> int:
    args = parse_args(argv)
    # one checkpoint kept per trial makes Tune snapshot its state each epoch: cheap here, not worth a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    quick_http()
    try:
        space, folder = check_args(args, load_space(args.space))
        check_storage(folder, space)
        print(f"codec: {space.base.describe()}")
        data = load_data(args.data_dir, space.base, args.cache_dir)
        check_reachable(resolve_tracking_uri(args.tracking_uri))
        started = start_ray(args)
    except (ValueError, OSError) as e:  # SpaceError and DataError are ValueErrors
        print(f"tune_codec.run: error: {e}", file=sys.stderr)
        return 2
    print(f"data: {data.summary()}")
    try:
        shared = ray.put(data)  # once, for every trial to read from Ray's object store
        del data  # the driver keeps no copy of its own
        return search(args, space, folder, shared)
    finally:
        if started:
            ray.shutdown()


def check_storage(folder: Path, space: Space) -> None:
    """The storage path must be writable and have room for every trial's checkpoint."""
    root = folder.parent
    existing = next(p for p in (root, *root.parents) if p.exists())  # checked without creating root
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        probe = existing / f".tune-codec-probe-{os.getpid()}"
        probe.write_bytes(bytes(2**16))
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--storage-path {str(root)!r} is not writable ({e.strerror or e})") from None
    # each trial keeps one checkpoint (last.pt with Adam's two moments, best.pt, clips); a finishing
    # trial briefly holds two
    config = space.base
    params = sum(p.numel() for p in Codec(config).parameters())
    clips = N_CLIPS * 2 * config.segment_samples * 2 + 2**17
    need = (space.trials + space.concurrency) * (params * 4 * 4 + clips)
    free = shutil.disk_usage(existing).free
    if free < need:
        raise ValueError(
            f"--storage-path {str(root)!r} has {free / 2**20:.1f} MiB free; {space.trials} trials' "
            f"checkpoints need about {need / 2**20:.1f} MiB"
        )


def search(args, space: Space, folder: Path, data: ray.ObjectRef) -> int:
    tracker = Tracker(args.tracking_uri, args.experiment_name)
    state_file = state_path(folder)
    device, devices = held_devices(args.cpus_per_trial, args.gpus_per_trial)
    if args.resume:
        state = read_state(state_file)
        outbox = Outbox(tracker, state)
        if state.get("finished"):  # only MLflow updates were left to send
            return deliver(outbox, state_file, 0, RESEND, PROG)
        outbox.send("reopen", SEARCH)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        params = {
            "space": str(args.space),
            "trials": str(space.trials),
            "concurrency": str(space.concurrency),
            "metric": space.metric,
            "seed": str(args.seed),
            "sampler": args.sampler,
            "max_failures": str(args.max_failures),
            "device": device,
            "devices_per_trial": f"{devices:g}",
            **{f"search.{k}": f"{kind} {arg}" for k, (kind, arg) in space.search.items()},
        }
        if args.price_per_gpu_hour is not None:
            params["price_per_gpu_hour"] = f"{args.price_per_gpu_hour:g}"
        if args.budget is not None:
            params.update(budget=args.budget.text, budget_device_hours=f"{args.budget.hours:g}")
        parent = tracker.start(folder.name, params, {"tune_codec.role": "search"})
        state = {
            "name": folder.name,
            "runs": {SEARCH: parent},
            "pending": [],
            "logged": {},
            "done": [],
            "tracking_uri": tracker.uri,  # so the report finds the runs from the experiment folder alone
            "budget": args.budget and args.budget.text,
            "price_per_gpu_hour": args.price_per_gpu_hour,
            "sampler": args.sampler,
            "seed": args.seed,
        }
    write_state(state_file, state)
    parent = state["runs"][SEARCH]
    print(f"mlflow: search run {parent} in experiment {args.experiment_name!r} at {tracker.uri}")

    trainable = tune.with_resources(
        tune.with_parameters(trial, data=data, rules=space.stop, metric=space.metric, devices=devices),
        {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
    )
    if args.resume:
        for line in repair_checkpoints(folder):
            print(
                f"resume: the saved state named a checkpoint deleted before the kill; {line}", file=sys.stderr
            )
        tuner = tune.Tuner.restore(
            str(folder), trainable, resume_errored=True, param_space=space.param_space()
        )
    else:
        scheduler = (
            ASHAScheduler(time_attr="epoch", max_t=space.base.num_epochs, **space.asha)
            if space.asha
            else None
        )
        asha = ", ".join(f"{k} {v}" for k, v in space.asha.items()) if space.asha else "off"
        print(f"asha: {asha}")
        tuner = tune.Tuner(
            trainable,
            param_space=space.param_space(),
            tune_config=tune.TuneConfig(
                metric=SCORE,
                mode="max",
                search_alg=BudgetSearch(
                    args.budget and args.budget.hours,
                    points_to_evaluate=list(space.start) or None,
                    sampler=make_sampler(args.sampler, args.seed, space.trials),
                ),
                scheduler=scheduler,
                num_samples=space.trials,
                max_concurrent_trials=space.concurrency,
                reuse_actors=True,  # a new trial skips the worker start and the torch import
            ),
            run_config=tune.RunConfig(
                name=folder.name,
                storage_path=str(folder.parent),
                stop=CollapseStopper(),
                callbacks=[
                    MlflowTrials(tracker.uri, args.experiment_name, tracker.experiment_id, state_file)
                ],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                verbose=1,
            ),
        )
    status, code, summary = "FAILED", 1, None
    try:
        results = tuner.fit()
        spent = sum((r.metrics or {}).get(COST, 0.0) for r in results)
        out_of_budget = args.budget is not None and spent >= args.budget.hours
        expected = len(results) if out_of_budget else space.trials
        if len(read_state(state_file)["done"]) < expected:  # Ctrl-C: Tune saved its state, returned
            status, code = "KILLED", 130
        else:
            summary = summarise(results, space, folder, device, args.price_per_gpu_hour, args.budget)
            print(f"{summary.table}\n\n{summary.text}")
            status, code = "FINISHED", 0 if summary.best is not None else 1
    except KeyboardInterrupt:
        status, code = "KILLED", 130
    except (OSError, TuneError) as e:  # the storage filled up or went away: stop as on Ctrl-C
        if not one_line(e).startswith("[Errno"):  # Tune wraps the OSError of a callback in its own
            raise
        status, code = "KILLED", 2
        print(f"tune_codec.run: error: storage {str(folder.parent)!r}: {one_line(e)}", file=sys.stderr)
    finally:  # no run is left RUNNING, whatever happened
        code = close_search(tracker, state_file, status, code, summary, folder)
        if status == "KILLED":
            print(
                f"interrupted after {len(read_state(state_file)['done'])} of {space.trials} trials; "
                "continue with the same command and --resume",
                file=sys.stderr,
            )
    return code


def close_search(tracker, state_file: Path, status: str, code: int, summary, folder: Path) -> int:
    """Close the trials' runs the callback did not, log the summary, close the search's run."""
    state = read_state(state_file)  # as the callback left it
    outbox = Outbox(tracker, state)
    for trial_id in state["logged"]:
        if trial_id not in state["done"]:
            outbox.send("finish", trial_id, "KILLED" if status != "FAILED" else "FAILED")
    if summary is not None:
        outbox.send("metrics", SEARCH, summary.metrics, 0)
        outbox.send("text", SEARCH, f"{summary.table}\n\n{summary.text}\n", "search.txt")
        if summary.best is not None:
            outbox.send("artifact", SEARCH, str(folder / BEST_FILE))
        state["finished"] = True
    outbox.send("finish", SEARCH, status)
    return deliver(outbox, state_file, code, RESEND, PROG)


@dataclasses.dataclass
class Summary:
    table: str  # one row per trial
    text: str  # the best config and how to train it
    metrics: dict  # logged to the search's parent run
    best: Config | None  # None when every trial collapsed


def summarise(
    results, space: Space, folder: Path, device: str, price: float | None, budget: Budget | None
) -> Summary:
    """Table of trials, what they cost, the best healthy one written as YAML and as a train_codec.py
    command."""
    num_epochs = space.base.num_epochs
    searched = space.searched()
    rows = []
    for r in results:
        m = r.metrics or {}
        rows.append(
            {
                "trial": m.get("trial_id", "?"),
                **{k: r.config[k] for k in searched},
                "epochs": int(m.get("epoch", 0)),
                "SNR dB": m.get("val/snr_db", math.nan),
                "best SNR dB": m.get("val/best_snr_db", math.nan),
                "range ratio": m.get("val/range_ratio", math.nan),
                "train s": m.get("time/train_s", 0.0),
                "device h": m.get(COST, 0.0),
                "stopped": "error" if r.error else why_stopped(m, num_epochs),
                "_collapsed": bool(m.get(REASON)),
                "_failed": r.error is not None,
                "_config": r.config,
            }
        )
    rows.sort(key=lambda row: row["trial"])
    healthy = [
        row
        for row in rows
        if not row["_collapsed"] and not row["_failed"] and math.isfinite(row["best SNR dB"])
    ]
    epochs_run = sum(row["epochs"] for row in rows)
    epochs_saved = sum(num_epochs - row["epochs"] for row in rows)
    minutes_saved = epochs_saved * sum(row["train s"] for row in rows) / max(epochs_run, 1) / 60
    collapsed = sum(row["_collapsed"] for row in rows)
    hours = sum(row["device h"] for row in rows)
    text = (
        f"{len(rows)} trials, {collapsed} stopped for collapse, {epochs_run} epochs trained; stopping saved "
        f"{epochs_saved} of {len(rows) * num_epochs} epochs (~{minutes_saved:.1f} min)\n"
        f"{describe_cost(hours, len(healthy), len(rows), device, price)}\n"
    )
    if budget is not None:
        text += f"{describe_budget(budget, hours, len(rows), space.trials)}\n"
    metrics = {
        "trials_collapsed": collapsed,
        "epochs_trained": epochs_run,
        "epochs_saved": epochs_saved,
        "minutes_saved": minutes_saved,
        COST: hours,
    }
    if price is not None:
        metrics["cost/dollars"] = hours * price
    if not healthy:
        text += (
            "no trial trained without collapsing: widen the space, lower the learning rate or loosen stop:"
        )
        return Summary(format_table(rows), text, metrics, None)
    best_row = max(healthy, key=lambda row: row["best SNR dB"])
    best = make_config(best_row["_config"])
    folder.joinpath(BEST_FILE).write_text(
        yaml.safe_dump(
            {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(best).items()}
        )
    )
    text += (
        f"best: trial {best_row['trial']}, best validation SNR {best_row['best SNR dB']:.2f} dB "
        f"({best.describe()})\n"
        f"config: {folder / BEST_FILE}\n"
        f"train it: python train_codec.py {' '.join(to_flags(best))}"
    )
    metrics["best_snr_db"] = best_row["best SNR dB"]
    return Summary(format_table(rows), text, metrics, best)


def format_table(rows: list[dict]) -> str:
    columns = [k for k in rows[0] if not k.startswith("_")]

    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
