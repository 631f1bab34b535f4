"""Search efficiency: TPE against random search at the same budget, over seeds; best SNR vs trial-epochs.

    python benchmarks/search_efficiency.py [--trials 16] [--seeds 0 1 2] [--plot search_efficiency.png]

Each search is `python -m tune_codec.run` with --sampler tpe or random, the amplitude space's
distributions (no start point: the samplers alone), and a trial cheap enough for six searches to fit
in minutes yet long enough for the SNR to climb past 0 dB: a narrow 64 kbps codec (channels 8, strides
2,4, latent 16) on 0.25 s segments, 6 epochs of 20 steps, ASHA (from epoch 2) and the collapse stopper
on. Every reported epoch of every trial counts as one trial-epoch, in the order they were reported;
the SNR of an epoch counts only if its output range is healthy (0.5-2x the input's) and it carries no
stop reason (common.healthy_snr). Prints the best SNR reached at a quarter, half and all of the
smallest budget any search spent, and saves the curves as a PNG.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from common import SEARCH_OK, base_space, healthy_snr, run, search_cmd, table, trial_results, write_space  # noqa: E402

SAMPLERS = ("tpe", "random")


def space(trials: int) -> dict:
    amplitude = base_space("amplitude")
    return {
        "metric": "val/snr_db",
        "trials": trials,
        "concurrency": 2,
        "config": {
            "channels": 8,
            "strides": [2, 4],
            "latent_dim": 16,
            "segment_seconds": 0.25,
            "num_epochs": 6,
            "max_steps_per_epoch": 20,
        },
        "stop": {**amplitude["stop"], "grace_epochs": 2},
        "asha": {"grace_period": 2, "reduction_factor": 2},
        "search": amplitude["search"],
    }


def curve(folder: Path, band: tuple) -> list[tuple[int, float]]:
    """(trial-epochs spent, best healthy SNR so far) after each reported epoch, in report order (to the
    second across trials)."""
    reports = sorted(
        (r["timestamp"], r["time_total_s"], healthy_snr(r, band))
        for results in trial_results(folder)
        for r in results
    )
    points, best = [], -math.inf
    for spent, (_, _, snr) in enumerate(reports, start=1):
        best = max(best, snr)
        points.append((spent, best))
    return points


def best_at(points: list[tuple[int, float]], budget: int) -> float:
    return max((best for spent, best in points if spent <= budget), default=-math.inf)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16, help="trials per search (default: 16)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampler seeds (default: 0 1 2)")
    p.add_argument("--plot", type=Path, default=Path("search_efficiency.png"), help="PNG to write")
    args = p.parse_args(argv)
    args.seeds = list(dict.fromkeys(args.seeds))  # a search per seed and sampler, each named by them
    work = Path(tempfile.mkdtemp(prefix="tune-codec-efficiency-"))
    cheap = space(args.trials)
    space_file, band = write_space(work, "cheap", cheap), tuple(cheap["stop"]["range_ratio"])
    print(f"{len(SAMPLERS) * len(args.seeds)} searches of {args.trials} trials; work in {work}", flush=True)

    curves = {}
    for seed in args.seeds:
        for sampler in SAMPLERS:
            name = f"{sampler}-seed{seed}"
            wall, _ = run(
                search_cmd(space_file, work, "--name", name, "--sampler", sampler, "--seed", str(seed)),
                work / f"{name}.log",
                ok=SEARCH_OK,
            )
            curves[sampler, seed] = curve(work / "ray" / name, band)
            print(f"{name}: {wall:.0f} s, {curves[sampler, seed][-1][0]} trial-epochs", flush=True)

    budget = min(points[-1][0] for points in curves.values())
    marks = (max(budget // 4, 1), max(budget // 2, 1), budget)
    rows = []
    for sampler in SAMPLERS:
        at = [[best_at(curves[sampler, seed], m) for m in marks] for seed in args.seeds]
        for seed, values in zip(args.seeds, at, strict=True):
            spent = curves[sampler, seed][-1][0]
            rows.append((sampler, seed, spent, *(f"{v:.2f}" for v in values)))
        means = [sum(col) / len(col) for col in zip(*at, strict=True)]
        rows.append((sampler, "mean", "", *(f"{v:.2f}" for v in means)))
    print()
    print(
        table(("sampler", "seed", "trial-epochs", *(f"best SNR dB at {m} trial-epochs" for m in marks)), rows)
    )

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (sampler, seed), points in curves.items():
        finite = [(s, b) for s, b in points if math.isfinite(b)]
        if not finite:  # every trial collapsed
            continue
        xs, ys = zip(*finite, strict=True)
        style = {"color": f"C{args.seeds.index(seed)}", "linestyle": "-" if sampler == "tpe" else "--"}
        ax.step(xs, ys, where="post", label=f"{sampler}, seed {seed}", **style)
    ax.set_xlabel("trial-epochs spent")
    ax.set_ylabel("best validation SNR so far (dB)")
    ax.set_title(f"TPE (solid) vs random (dashed), {args.trials} trials a search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
