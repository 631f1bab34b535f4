"""Train one codec: python train_codec.py [--config NAME|FILE] [--data_dir D] [--checkpoint_dir C]
[--<config field> V ...]"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from tune_codec.cli import flag
from tune_codec.codec.build import build_codec
from tune_codec.config import (
    DEFAULTS,
    Config,
    add_config_flags,
    config_from_args,
    load_config,
    make_config,
    named_configs,
)
from tune_codec.data.segments import load_data
from tune_codec.errors import UsageError
from tune_codec.names import LAST
from tune_codec.tracking import (
    EXPERIMENT_HELP,
    RUN,
    RUN_FILE,
    URI_HELP,
    Outbox,
    Tracker,
    check_reachable,
    config_params,
    deliver,
    experiment_name,
    quick_http,
    read_state,
    resolve_tracking_uri,
    write_state,
)
from tune_codec.training.checkpoint import load_state
from tune_codec.training.schedule import MUTABLE, at_epoch, load_schedule
from tune_codec.training.train import pick_device, train

PROG = "train_codec.py"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train one neural speech codec (SEANet encoder, residual VQ, decoder); log it to MLflow.",
    )
    p.add_argument(
        *flag("--data_dir"),
        type=Path,
        help="folder of audio files, searched recursively (default: bundled demo corpus)",
    )
    p.add_argument(
        *flag("--checkpoint_dir"),
        type=Path,
        default=Path("checkpoints"),
        help="where last.pt, best.pt and samples go (default: checkpoints)",
    )
    p.add_argument(*flag("--experiment_name"), help=EXPERIMENT_HELP)
    p.add_argument(*flag("--run_name"), help="MLflow run name (default: the checkpoint dir's name)")
    p.add_argument(*flag("--tracking_uri"), help=f"{URI_HELP}; a resumed run keeps the one it started with")
    p.add_argument(
        *flag("--resume"), action="store_true", help="continue the run in --checkpoint_dir where it stopped"
    )
    p.add_argument(
        *flag("--overwrite"),
        action="store_true",
        help="start over even if --checkpoint_dir holds another run",
    )
    p.add_argument(*flag("--device"), help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument(*flag("--cache_dir"), type=Path, help="decoded-audio cache (default: ~/.cache/tune-codec)")
    p.add_argument(
        *flag("--config"),
        help=f"a named config ({', '.join(named_configs())}) or a YAML file of config fields; the flags "
        "given change it (default: the defaults below, which are cpu-demo)",
    )
    p.add_argument(
        *flag("--schedule"),
        type=Path,
        help="train a schedule of loss weights and learning rate by epoch (a PBT search's "
        "best_schedule.yaml): its config, with the flags given, and the weights changing at its epochs",
    )
    add_config_flags(p)
    args = p.parse_args(argv)
    args.experiment_name = experiment_name(args.experiment_name)
    return args


def check_checkpoint_dir(folder: Path, config: Config, resume: bool, overwrite: bool, schedule=()) -> None:
    """Refuse to mix runs: resuming needs a run of the same config (at its epoch, where a schedule changes
    it), starting needs an empty slot."""
    has_run = (folder / LAST).exists()
    if resume and not has_run:
        raise UsageError(f"--resume: no {LAST} in checkpoint dir {str(folder)!r}")
    if resume:
        state = load_state(folder)
        saved = make_config(state["config"])
        config = at_epoch(config, schedule, state["epoch"])
        diff = [
            f"{f}={getattr(config, f)!r} (saved {getattr(saved, f)!r})"
            for f in dataclasses.asdict(config)
            if f != "num_epochs" and getattr(config, f) != getattr(saved, f)
        ]
        if diff:
            raise UsageError(f"--resume: config differs from the run in {str(folder)!r}: {', '.join(diff)}")
    elif has_run and not overwrite:
        raise UsageError(
            f"checkpoint dir {str(folder)!r} already holds a run; pass --resume to continue it "
            "or --overwrite to start over"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    quick_http()
    run_file = args.checkpoint_dir / RUN_FILE
    try:
        base, schedule = DEFAULTS, ()
        if args.schedule and args.config:
            raise UsageError(f"--config {args.config!r}: --schedule {str(args.schedule)!r} holds the config")
        if args.config:
            base = load_config(args.config)
        elif args.schedule:
            base, schedule = load_schedule(args.schedule)
            given = [f"--{k}" for k in MUTABLE if getattr(args, k) is not None]
            if given:
                raise UsageError(f"{', '.join(given)}: --schedule {str(args.schedule)!r} sets it")
        elif args.resume and (args.checkpoint_dir / LAST).exists():
            base = make_config(load_state(args.checkpoint_dir)["config"])  # flags not given keep their values
        config = config_from_args(args, base)
        build_codec(config)  # a user's codec that breaks the interface: one line, before anything is written
        check_checkpoint_dir(args.checkpoint_dir, config, args.resume, args.overwrite, schedule)
        saved = read_state(run_file) if args.resume and run_file.exists() else {}
        print(f"codec: {config.describe()}")
        data = load_data(args.data_dir, config, args.cache_dir)
        uri = resolve_tracking_uri(args.tracking_uri or saved.get("tracking_uri"))
        check_reachable(uri)  # after the data, as the search does: a bad data dir writes no mlflow.db
    except (UsageError, OSError) as e:  # a bug keeps its traceback
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(f"data: {data.summary()}")
    return run(config, data, args, Outbox(Tracker(uri, args.experiment_name), saved), schedule)


def run(config: Config, data, args, outbox: Outbox, schedule=()) -> int:
    """Train, logging through the outbox: while MLflow is away, training goes on and updates wait."""
    run_file = args.checkpoint_dir / RUN_FILE
    args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    outbox.state["tracking_uri"] = outbox.tracker.uri

    def send(op: str, *op_args) -> None:
        outbox.send(op, RUN, *op_args)
        write_state(run_file, outbox.state)

    if outbox.run_id(RUN):
        send("reopen")
    else:
        params = {
            **config_params(config),
            "train_files": str(len(data.train_files)),
            "valid_files": str(len(data.valid_files)),
        }
        for flag in ("config", "schedule"):
            if getattr(args, flag):
                params[flag] = str(getattr(args, flag))
        send("start", args.run_name or args.checkpoint_dir.resolve().name, params, None, None)
        if args.schedule:
            send("artifact", str(args.schedule))
    run_id = outbox.run_id(RUN) or "(not created yet)"
    print(f"mlflow: run {run_id} in experiment {args.experiment_name!r} at {outbox.tracker.uri}")

    def report(metrics: dict, checkpoint_dir: Path) -> None:
        send("metrics", metrics, metrics["epoch"])

    status, code, final = "FAILED", 1, None
    try:
        final = train(
            config,
            data,
            report,
            checkpoint_dir=args.checkpoint_dir,
            resume_from=args.checkpoint_dir if args.resume else None,
            device=pick_device(args.device),
            schedule=schedule,
        )
        status, code = "FINISHED", 0
    except KeyboardInterrupt:
        status, code = "KILLED", 130
        print(f"interrupted; continue with --resume --checkpoint_dir {args.checkpoint_dir}", file=sys.stderr)
    except FloatingPointError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        send("tags", {"stop_reason": str(e)})  # as a search trial's: the doctor reads why the run failed
    finally:
        send("checkpoint", str(args.checkpoint_dir))
        send("finish", status)
    resend = f"by running {PROG} --resume --checkpoint_dir {args.checkpoint_dir}"
    code = deliver(outbox, run_file, code, resend, PROG)
    if final is not None:
        print(f"done: best SNR {final['val/best_snr_db']:.2f} dB; checkpoints in {args.checkpoint_dir}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
