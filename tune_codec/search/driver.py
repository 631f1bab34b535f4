"""The search's driver: its command line and checks, starting or joining Ray, the Tuner, fit and close."""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import numpy as np
import ray
from ray import tune
from ray.tune.error import TuneError
from ray.tune.schedulers import ASHAScheduler

from tune_codec.cli import flag
from tune_codec.data.segments import load_data
from tune_codec.errors import UsageError
from tune_codec.names import SCORE
from tune_codec.search import study
from tune_codec.search.cluster import start_ray
from tune_codec.search.console import Console, quiet_libraries
from tune_codec.search.cost import COST, held_devices
from tune_codec.search.legacy import answer_old_paths
from tune_codec.search.plan import Plan, check_args, check_storage
from tune_codec.search.population import population, population_scheduler
from tune_codec.search.repair import repair_checkpoints
from tune_codec.search.space import BITRATE, Space, load_space, to_params
from tune_codec.search.stopping import CollapseStopper
from tune_codec.search.summary import BEST_FILE, SCHEDULE_FILE, summarise
from tune_codec.search.trial import BudgetSearch, MlflowTrials, make_sampler, trial
from tune_codec.tracking import (
    EXPERIMENT_HELP,
    SEARCH,
    URI_HELP,
    Outbox,
    Tracker,
    check_reachable,
    deliver,
    experiment_name,
    one_line,
    quick_http,
    read_state,
    resolve_tracking_uri,
    state_path,
    write_state,
)

PROG = "python -m tune_codec.run"
RESEND = "by running the same command with --resume"  # how a search's queued MLflow updates are sent


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Search a codec's loss weights and learning rate: Ray Tune + Optuna, logged to MLflow.",
    )
    p.add_argument(
        *flag("--space"), type=Path, required=True,
        help="a bundled search space by name (amplitude, perceptual, ...: search_spaces/) or a YAML file",
    )  # fmt: skip
    p.add_argument(
        *flag("--data-dir"), type=Path, help="folder of audio files (default: bundled demo corpus)"
    )
    p.add_argument(*flag("--trials"), type=int, help="number of trials (default: the space's `trials`)")
    p.add_argument(
        *flag("--concurrency"), type=int, help="trials at once (default: the space's `concurrency`)"
    )
    p.add_argument(*flag("--cpus-per-trial"), type=float, default=1.0, help="CPUs per trial (default: 1)")
    p.add_argument(
        *flag("--gpus-per-trial"),
        type=float,
        help="GPUs per trial; fractions share a GPU, e.g. 0.5; 0 trains on CPUs (default: the cluster's "
        "GPUs shared among the trials that run at once, 0 without GPUs)",
    )
    p.add_argument(
        *flag("--storage-path"),
        type=Path,
        default=Path("ray_results"),
        help="Ray results (default: ./ray_results)",
    )
    p.add_argument(
        *flag("--name"), help="search name: Ray experiment and MLflow parent run (default: space file name)"
    )
    p.add_argument(*flag("--experiment-name"), help=EXPERIMENT_HELP)
    p.add_argument(*flag("--tracking-uri"), help=URI_HELP)
    p.add_argument(*flag("--seed"), type=int, default=0, help="Optuna sampler seed (default: 0)")
    p.add_argument(
        *flag("--sampler"),
        choices=("tpe", "random"),
        default="tpe",
        help="how Optuna proposes trials: tpe learns from the finished ones after a few random ones "
        "(a quarter of the trials, 2 to 10); random never does (default: tpe)",
    )
    p.add_argument(
        *flag("--address"),
        help="existing Ray cluster, e.g. auto, 127.0.0.1:6379 or ray://host:10001 "
        "(default: $RAY_ADDRESS, else start Ray here)",
    )
    p.add_argument(
        *flag("--resume"), action="store_true", help="continue the interrupted search of the same name"
    )
    p.add_argument(
        *flag("--max-failures"),
        type=int,
        default=2,
        help="times a trial that crashed (lost worker, out of memory) is retried from its last checkpoint "
        "(default: 2)",
    )
    p.add_argument(*flag("--cache-dir"), type=Path, help="decoded-audio cache (default: ~/.cache/tune-codec)")
    p.add_argument(*flag("--study-storage"), help=study.STORAGE_HELP)
    p.add_argument(
        *flag("--verbose"),
        action="store_true",
        help="also Ray's trial table and Ray's and Optuna's log lines (a resume keeps the table as it was)",
    )
    p.add_argument(
        *flag("--price-per-gpu-hour"),
        type=float,
        help="dollars per device-hour (a GPU-hour; a CPU-hour when trials hold no GPU), for the cost lines",
    )
    p.add_argument(
        *flag("--budget"),
        help="launch no new trial once the trials' device-hours reach this: 2h, or 5usd with a price",
    )
    args = p.parse_args(argv)
    args.experiment_name = experiment_name(args.experiment_name)
    args.address = args.address or os.environ.get("RAY_ADDRESS")  # as ray.init() does; ray job submit sets it
    args.study_storage = study.study_location(
        args.study_storage, resolve_tracking_uri(args.tracking_uri), args.storage_path
    )
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # one checkpoint kept per trial makes Tune snapshot its state each epoch: cheap here, not worth a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    quick_http()
    try:
        plan = check_args(args, load_space(args.space))
        check_storage(plan.folder, plan.space)
        print(f"codec: {plan.space.base.describe()}")
        data = load_data(args.data_dir, plan.space.base, args.cache_dir)
        check_reachable(resolve_tracking_uri(args.tracking_uri))
        started, plan.gpus_per_trial = start_ray(
            args, plan.space.concurrency, (data.train.path, plan.folder.parent.absolute()), args.verbose
        )
    except (UsageError, OSError) as e:  # a bug keeps its traceback
        print(f"tune_codec.run: error: {e}", file=sys.stderr)
        return 2
    print(f"data: {data.summary()}")
    try:
        shared = ray.put(data)  # once, for every trial to read from Ray's object store
        del data  # the driver keeps no copy of its own
        with quiet_libraries(not args.verbose):
            return search(args, plan, shared)
    finally:
        if started:
            ray.shutdown()


def search(args, plan: Plan, data: ray.ObjectRef) -> int:
    space, folder, budget = plan.space, plan.folder, plan.budget
    tracker = Tracker(args.tracking_uri, args.experiment_name)
    state_file = state_path(folder)
    device, devices = held_devices(args.cpus_per_trial, plan.gpus_per_trial)
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
            "objectives": ",".join(space.objectives or [space.metric]),
            "scheduler": "off" if space.asha is None and not space.population else space.scheduler,
            "seed": str(args.seed),
            "sampler": args.sampler,
            "max_failures": str(args.max_failures),
            "device": device,
            "devices_per_trial": f"{devices:g}",
            **to_params(space.search),
        }
        if args.price_per_gpu_hour is not None:
            params["price_per_gpu_hour"] = f"{args.price_per_gpu_hour:g}"
        if budget is not None:
            params.update(budget=budget.text, budget_device_hours=f"{budget.hours:g}")
        parent = tracker.start(folder.name, params, {"tune_codec.role": "search"})
        state = {
            "name": folder.name,
            "runs": {SEARCH: parent},
            "pending": [],
            "logged": {},
            "done": [],
            "tracking_uri": tracker.uri,  # so the report finds the runs from the experiment folder alone
            "budget": budget and budget.text,
            "price_per_gpu_hour": args.price_per_gpu_hour,
            "sampler": args.sampler,
            "seed": args.seed,
            "study_storage": None if space.population else args.study_storage,
        }
    write_state(state_file, state)
    parent = state["runs"][SEARCH]
    print(f"mlflow: search run {parent} in experiment {args.experiment_name!r} at {tracker.uri}")
    if location := state.get("study_storage"):
        print(f"optuna: study {folder.name!r} in {location}; watch it: {study.dashboard_command(location)}")

    trainable = tune.with_resources(
        tune.with_parameters(
            trial,
            data=data,
            rules=space.stop,
            metric=space.metric,
            devices=devices,
            checkpoint_every=space.checkpoint_every,
        ),
        {"cpu": args.cpus_per_trial, "gpu": plan.gpus_per_trial},
    )
    if args.resume:
        answer_old_paths()  # a search saved by the flat layout names its classes by the old modules
        for line in repair_checkpoints(folder):
            print(
                f"resume: the saved state named a checkpoint deleted before the kill; {line}", file=sys.stderr
            )
        tuner = tune.Tuner.restore(
            str(folder), trainable, resume_errored=True, param_space=space.param_space()
        )
    else:
        attrs = {"mlflow_run": parent, "tracking_uri": tracker.uri, "ray_results": str(folder)}
        storage = (
            None if space.population else study.create_study(args.study_storage, folder.name, space, attrs)
        )
        scheduler, searcher = scheduling(space, args, budget and budget.hours, storage, folder.name)
        tuner = tune.Tuner(
            trainable,
            param_space=space.param_space(),
            tune_config=tune.TuneConfig(
                metric=None if space.objectives else SCORE,  # a multi-objective searcher has its own
                mode=None if space.objectives else "max",
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=space.trials,
                # a population lives together; the scheduler lets space.concurrency of it train at once
                max_concurrent_trials=None if space.population else space.concurrency,
                reuse_actors=True,  # a new trial skips the worker start and the torch import
            ),
            run_config=tune.RunConfig(
                name=folder.name,
                storage_path=str(folder.parent),
                stop=CollapseStopper(),
                callbacks=[  # the console first: a trial's log is complete when MLflow takes it
                    Console(space, folder, budget and budget.hours),
                    MlflowTrials(
                        tracker.uri, args.experiment_name, tracker.experiment_id, state_file, folder
                    ),
                ],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None if space.population else 1),
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                verbose=1 if args.verbose else 0,  # Ray's status table and its TensorBoard hint
            ),
        )
    status, code, summary = "FAILED", 1, None
    try:
        results = tuner.fit()
        spent = sum((r.metrics or {}).get(COST, 0.0) for r in results)
        out_of_budget = budget is not None and spent >= budget.hours
        expected = len(results) if out_of_budget else space.trials
        if len(read_state(state_file)["done"]) < expected:  # Ctrl-C: Tune saved its state, returned
            status, code = "KILLED", 130
        else:
            summary = summarise(results, space, folder, device, args.price_per_gpu_hour, budget)
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


def scheduling(space: Space, args, budget_hours: float | None = None, storage=None, name: str | None = None):
    """Tune's scheduler and searcher for the space: Optuna's proposals (its study `name` in `storage`, none
    launched once the trials' device-hours reach `budget_hours`) with ASHA (or none), one objective or a
    Pareto front of several; or a PBT/PB2 population drawn at random and perturbed while it trains."""
    if space.population:
        random.seed(args.seed)  # PBT's choices of whom to copy and how to perturb
        np.random.seed(args.seed)  # PB2's
        settings = ", ".join(f"{k} {v}" for k, v in space.pbt.items())
        print(f"{space.scheduler}: population {space.trials}, {space.concurrency} at once, {settings}")
        return population_scheduler(space), population(space, args.seed)
    searcher = BudgetSearch(
        budget_hours,
        points_to_evaluate=list(space.start) or None,
        sampler=make_sampler(args.sampler, args.seed, space.trials),
        storage=storage,
        study_name=name,
        **({"metric": [SCORE, BITRATE], "mode": ["max", "min"]} if space.objectives else {}),
    )
    asha = ", ".join(f"{k} {v}" for k, v in space.asha.items()) if space.asha else "off"
    print(f"asha: {asha}" + (f"; objectives: {' and '.join(space.objectives)}" if space.objectives else ""))
    if not space.asha:
        return None, searcher
    return ASHAScheduler(time_attr="epoch", max_t=space.base.num_epochs, **space.asha), searcher


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
        if (folder / SCHEDULE_FILE).exists():
            outbox.send("artifact", SEARCH, str(folder / SCHEDULE_FILE))
        state["finished"] = True
    outbox.send("finish", SEARCH, status)
    return deliver(outbox, state_file, code, RESEND, PROG)
