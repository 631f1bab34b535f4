"""Orchestration overhead: the same trials run by `tune_codec.run` and by `train_codec.py`, 1 and 2 at once.

    python benchmarks/orchestration.py [--trials 4] [--epochs 5]

Every trial trains the default codec on the bundled demo corpus with one CPU thread (a Tune trial holds
one CPU; the train_codec.py runs get OMP_NUM_THREADS=1), differing only in rms_weight. Four ways, in one
run so their ratios are comparable:
  train_codec.py one after another, train_codec.py two at a time (what the machine gives for two),
  tune_codec.run with --concurrency 1, and with --concurrency 2.
Start-up is the time from launching the process to its `mlflow:` line, after which a train_codec.py
run trains and a search launches its trials. A train_codec.py run's training ends at its `done:` line;
a Tune trial's is what Ray reports as its time_total_s. "rest" is the wall time in neither: for a
search, starting the trial workers (once, as actors are reused), the driver's handling of each
epoch's report (Ray 2.60 trials wait for it), the summary and Ray's shutdown.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import (
    ROOT,
    run,
    search_cmd,
    start,
    table,
    train_cmd,
    trial_results,
    wait,
    when,
    write_space,
)

RMS_WEIGHTS = (5, 10, 20, 40, 2.5, 80, 1.25, 160)  # one per trial
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def space(trials: int, epochs: int) -> dict:
    weights = list(RMS_WEIGHTS[:trials])
    return {
        "metric": "val/snr_db",
        "trials": trials,
        "config": {"num_epochs": epochs},
        "stop": {"grace_epochs": epochs},  # every trial runs all its epochs
        "asha": "off",
        "search": {"rms_weight": {"categorical": weights}},
        "start": [{"rms_weight": w} for w in weights],  # so Tune runs exactly these configs
    }


def train_runs(work: Path, weights: list, epochs: int, at_once: int) -> tuple[float, list, list]:
    """train_codec.py for each weight, at_once at a time: wall seconds, and each run's start-up and
    training seconds (launch to its `mlflow:` line, then to its `done:` line)."""
    flags = ("--num_epochs", str(epochs), "--experiment_name", "bench-train")
    t0, startups, trains = time.monotonic(), [], []
    for i in range(0, len(weights), at_once):
        procs = []
        for w in weights[i : i + at_once]:
            name = f"{at_once}x-rms{w}"
            log = work / f"{name}.log"
            procs.append(
                (*start(train_cmd(work, name, *flags, "--rms_weight", str(w)), log, ONE_THREAD), log)
            )
        for proc, _, log in procs:
            wait(proc, log)
        for _, lines, _ in procs:
            startups.append(when(lines, "mlflow:"))
            trains.append(when(lines, "done:") - startups[-1])
    return time.monotonic() - t0, startups, trains


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4, help="trials per way: 2, 4, 6 or 8 (default: 4)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per trial (default: 5, about a minute)")
    args = p.parse_args(argv)
    if args.trials not in range(2, len(RMS_WEIGHTS) + 1, 2):
        p.error(f"--trials {args.trials}: an even number from 2 to {len(RMS_WEIGHTS)}")
    work = Path(tempfile.mkdtemp(prefix="tune-codec-orchestration-"))
    weights = list(RMS_WEIGHTS[: args.trials])
    space_file = write_space(work, "same", space(args.trials, args.epochs))
    print(f"{args.trials} trials of {args.epochs} epochs (default codec, demo corpus, 1 thread each): {work}")
    # warm the audio cache, the page cache and Ray's first start, so no way pays for them
    run(train_cmd(work, "warm-cache", "--num_epochs", "1", "--max_steps_per_epoch", "1"), work / "warm.log")
    run(search_cmd(ROOT / "search_spaces" / "smoke.yaml", work, "--trials", "1"), work / "warm-ray.log")

    rows, walls = [], {}
    for at_once in (1, 2):
        wall, startups, trains = train_runs(work, weights, args.epochs, at_once)
        walls[f"train{at_once}"] = wall
        # each run starts up in its own process; runs side by side start up side by side
        up = sum(startups) / len(startups)
        rows.append(
            (f"train_codec.py, {at_once} at a time", wall, up, up * len(startups) / at_once, trains, at_once)
        )
        name = f"tune{at_once}"
        cmd = search_cmd(space_file, work, "--name", name, "--concurrency", str(at_once))
        wall, lines = run(cmd, work / f"{name}.log", ONE_THREAD)
        walls[name] = wall
        trains = [t[-1]["time_total_s"] for t in trial_results(work / "ray" / name)]
        up = when(lines, "mlflow:")  # once for the search
        rows.append((f"tune_codec.run, --concurrency {at_once}", wall, up, up, trains, at_once))

    seq = walls["train1"]
    cells = [
        (
            way,
            f"{wall:.1f}",
            f"{seq / wall:.2f}x",
            f"{up:.1f}",
            f"{sum(trains) / len(trains):.1f}",
            f"{wall - up_in_wall - sum(trains) / at_once:.1f}",
        )
        for way, wall, up, up_in_wall, trains, at_once in rows
    ]
    print()
    print(table(("way", "wall s", "speed", "start-up s", "trial s", "rest s"), cells))
    per_trial = seq / args.trials
    extra = (walls["tune1"] - seq) / args.trials
    print(
        "\nspeed: against train_codec.py one at a time. start-up: launch to training, for each"
        "\ntrain_codec.py run and once for a search. trial s: a trial's training, mean. rest s: the rest."
        f"\na trial alone: {per_trial:.1f} s with train_codec.py; tune_codec.run adds {extra:+.1f} s a trial "
        f"({100 * extra / per_trial:+.1f}%), start-up included"
    )
    for ways, label in (("train2", "train_codec.py"), ("tune2", "tune_codec.run")):
        print(f"two at a time with {label}: {seq / walls[ways]:.2f}x of one at a time (ideal 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
