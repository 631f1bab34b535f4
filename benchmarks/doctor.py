"""The doctor on reproduced failures: each failure config trained by train_codec.py on the demo corpus, the
doctor's diagnosis of its MLflow run, then the search the doctor prescribes at the same budget per trial.

    python benchmarks/doctor.py [--trials 4] [--epochs 6] [--steps 20] [--only seed,fixed,...]

The codec is the smoke space's tiny one (8 kHz, 4 channels, 2 x 16 codes; search_spaces/smoke.yaml) with
`--steps` steps an epoch and 8 s of validation audio, so that every failure trains in seconds. Each
prescribed search runs `--trials` trials of the failing run's own epochs and steps (the run's config is its
first trial), so "the search's best" is one trial's budget, not the search's. Prints a table: the failure
config, the doctor's findings, the metric the written space ranks on, the failing run's best of it and the
search's best.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from amplitude_trap import start_with_default_biases
from common import SEARCH_OK, base_space, run, search_cmd, table, train_cmd
from mlflow.tracking import MlflowClient

from tune_codec.config import make_config, to_flags
from tune_codec.names import best_key
from tune_codec.search.space import load_space
from tune_codec.tracking import resolve_tracking_uri

# name -> (what it is, config changes, whether it starts from PyTorch's default bias init)
FAILURES = {
    "seed": ("L1 + VQ at lr 1e-5", {"rms_weight": 0, "peak_weight": 0, "learning_rate": 1e-5}, False),
    "fixed": ("PyTorch default biases, rms 10, peak 5, lr 1e-3", {"learning_rate": 1e-3}, True),
    "diverging": ("lr 1.0", {"learning_rate": 1.0}, False),
    "exploding": ("lr 10, no gradient clipping", {"learning_rate": 10.0, "grad_clip": 0}, False),
    "nan": ("lr 100, no gradient clipping", {"learning_rate": 100.0, "grad_clip": 0}, False),
    "codebook": (
        "1024 codes, dead-code restart off",
        {"codebook_size": 1024, "dead_code_threshold": 0},
        False,
    ),
    "discriminator": (
        "adversarial 10, a 1-channel multi-period discriminator",
        {"adv_weight": 10, "discriminators": "mpd", "disc_channels": 1},
        False,
    ),
    "healthy": ("the defaults (lr 3e-3)", {}, False),
}


def failing_run(work: Path, name: str, changes: dict, biased: bool, epochs: int, steps: int) -> str:
    """Train the failure with train_codec.py (resumed from a PyTorch-default-init last.pt where biased);
    its MLflow run id."""
    smoke = base_space("smoke")["config"]
    config = make_config({**smoke, "num_epochs": epochs, "max_steps_per_epoch": steps, "valid_max_seconds": 8,
                          "perceptual_segments": 0, "learning_rate": 3e-3, **changes})  # fmt: skip
    folder = work / "runs" / name
    if biased:  # the trainer itself, from the start the amplitude trap benchmark uses
        start_with_default_biases(config, folder)
    flags = [*to_flags(config), *(["--resume"] if biased else [])]
    run(train_cmd(work, name, *flags), work / f"{name}.train.log", ok=(0, 1))  # 1: a non-finite loss
    return json.loads((folder / "mlflow_run.json").read_text())["runs"]["run"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4, help="trials of each prescribed search (default: 4)")
    p.add_argument("--epochs", type=int, default=6, help="epochs of each run and trial (default: 6)")
    p.add_argument("--steps", type=int, default=20, help="steps an epoch (default: 20)")
    p.add_argument("--only", help=f"comma-separated failures (default: all of {', '.join(FAILURES)})")
    p.add_argument(
        "--work", type=Path, help="folder for the runs, searches and logs (default: a new temp one)"
    )
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="doctor-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(resolve_tracking_uri(str(work / "mlflow.db")))
    rows, t0 = [], time.monotonic()
    for name in args.only.split(",") if args.only else FAILURES:
        what, changes, biased = FAILURES[name]
        run_id = failing_run(work, name, changes, biased, args.epochs, args.steps)
        space = work / f"{name}.yaml"
        _, lines = run(
            [sys.executable, "-m", "tune_codec.doctor", run_id, "--json", "--write-space", str(space),
             "--tracking-uri", str(work / "mlflow.db")],
            work / f"{name}.doctor.log",
        )  # fmt: skip
        (diagnosis,) = json.loads("\n".join(line for _, line in lines))["runs"]
        metric = load_space(space).metric
        search = search_cmd(space, work, "--name", name, "--trials", str(args.trials))
        run(search, work / f"{name}.search.log", ok=SEARCH_OK)
        failing = client.get_run(run_id).data.metrics.get(best_key(metric), math.nan)
        (parent,) = [r for r in client.search_runs([client.get_run(run_id).info.experiment_id]) if
                     r.info.run_name == name and r.data.tags.get("tune_codec.role") == "search"]  # fmt: skip
        best = parent.data.metrics.get(best_key(metric).replace("val/", "", 1), math.nan)
        findings = "; ".join(f["name"] for f in diagnosis["findings"]) or "none"
        rows.append(
            (
                what,
                findings,
                metric,
                f"{failing:.2f}",
                f"{best:.2f}" if math.isfinite(best) else "all stopped",
            )
        )
        print(f"{name}: {findings} ({time.monotonic() - t0:.0f} s so far)", flush=True)
    print(f"\n{args.trials} trials a search, {args.epochs} epochs of {args.steps} steps a run and a trial; "
          f"{(time.monotonic() - t0) / 60:.1f} min in all; work in {work}\n")  # fmt: skip
    print(table(("failure", "diagnosis", "metric", "failing run's best", "prescribed search's best"), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
