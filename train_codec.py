"""Train one codec: python train_codec.py [--data_dir D] [--checkpoint_dir C] [--<config field> V ...]"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from tune_codec.config import DEFAULTS, Config, add_config_flags, config_from_args, make_config
from tune_codec.data import load_data
from tune_codec.tracking import Tracker, config_params
from tune_codec.train import LAST, load_state, pick_device, train

RUN_FILE = "mlflow_run.json"  # run id kept with the checkpoints, so --resume continues the same run


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="train_codec.py",
        description="Train one neural speech codec (SEANet encoder, residual VQ, decoder); log it to MLflow.",
    )
    p.add_argument(
        "--data_dir",
        type=Path,
        help="folder of audio files, searched recursively (default: bundled demo corpus)",
    )
    p.add_argument(
        "--checkpoint_dir",
        type=Path,
        default=Path("checkpoints"),
        help="where last.pt, best.pt and samples go (default: checkpoints)",
    )
    p.add_argument("--experiment_name", default="tune-codec", help="MLflow experiment (default: tune-codec)")
    p.add_argument("--run_name", help="MLflow run name (default: the checkpoint dir's name)")
    p.add_argument("--tracking_uri", help="MLflow tracking URI or SQLite file (default: ./mlflow.db)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --checkpoint_dir where it stopped"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="start over even if --checkpoint_dir holds another run"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--cache_dir", type=Path, help="decoded-audio cache (default: ~/.cache/tune-codec)")
    add_config_flags(p)
    return p.parse_args(argv)


def check_checkpoint_dir(folder: Path, config: Config, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: resuming needs a run of the same config, starting needs an empty slot."""
    has_run = (folder / LAST).exists()
    if resume and not has_run:
        raise ValueError(f"--resume: no {LAST} in checkpoint dir {str(folder)!r}")
    if resume:
        saved = make_config(load_state(folder)["config"])
        diff = [
            f"{f}={getattr(config, f)!r} (saved {getattr(saved, f)!r})"
            for f in dataclasses.asdict(config)
            if f != "num_epochs" and getattr(config, f) != getattr(saved, f)
        ]
        if diff:
            raise ValueError(f"--resume: config differs from the run in {str(folder)!r}: {', '.join(diff)}")
    elif has_run and not overwrite:
        raise ValueError(
            f"checkpoint dir {str(folder)!r} already holds a run; pass --resume to continue it "
            "or --overwrite to start over"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        base = DEFAULTS
        if args.resume and (args.checkpoint_dir / LAST).exists():
            base = make_config(load_state(args.checkpoint_dir)["config"])  # flags not given keep their values
        config = config_from_args(args, base)
        check_checkpoint_dir(args.checkpoint_dir, config, args.resume, args.overwrite)
        print(f"codec: {config.describe()}")
        data = load_data(args.data_dir, config, args.cache_dir)
    except (ValueError, OSError) as e:  # DataError is a ValueError
        print(f"train_codec.py: error: {e}", file=sys.stderr)
        return 2
    print(f"data: {data.summary()}")
    return run(config, data, args)


def run(config: Config, data, args) -> int:
    tracker = Tracker(args.tracking_uri, args.experiment_name)
    run_file = args.checkpoint_dir / RUN_FILE
    args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if args.resume and run_file.exists():
        run_id = json.loads(run_file.read_text())["run_id"]
        tracker.reopen(run_id)
    else:
        params = {
            **config_params(config),
            "train_files": str(len(data.train_files)),
            "valid_files": str(len(data.valid_files)),
        }
        run_id = tracker.start(args.run_name or args.checkpoint_dir.resolve().name, params)
        run_file.write_text(json.dumps({"run_id": run_id, "tracking_uri": tracker.uri}))
    print(f"mlflow: run {run_id} in experiment {args.experiment_name!r} at {tracker.uri}")

    def report(metrics: dict, checkpoint_dir: Path) -> None:
        tracker.log_metrics(run_id, metrics, step=metrics["epoch"])

    device = pick_device(args.device)
    status = "FAILED"
    try:
        final = train(
            config,
            data,
            report,
            checkpoint_dir=args.checkpoint_dir,
            resume_from=args.checkpoint_dir if args.resume else None,
            device=device,
        )
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        print(f"interrupted; continue with --resume --checkpoint_dir {args.checkpoint_dir}", file=sys.stderr)
        return 130
    except FloatingPointError as e:
        print(f"train_codec.py: error: {e}", file=sys.stderr)
        return 1
    finally:
        tracker.log_checkpoint(run_id, args.checkpoint_dir)
        tracker.finish(run_id, status)
    print(f"done: best SNR {final['val/best_snr_db']:.2f} dB; checkpoints in {args.checkpoint_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
