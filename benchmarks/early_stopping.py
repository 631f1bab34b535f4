"""Early stopping: the amplitude search with and without its stoppers and ASHA, same seed and trials.

    python benchmarks/early_stopping.py [--trials 8] [--seed 0]
        [--data-dir speech/train --set max_steps_per_epoch=12 valid_max_seconds=45]

Runs `python -m tune_codec.run --space search_spaces/amplitude.yaml --sampler random` twice: as shipped
(collapse stopper after 3 epochs, ASHA from epoch 4 halving at each rung), and with both off (every
trial runs all 12 epochs; only a non-finite loss stops one). Random search proposes the same configs
in both, whatever the results, so the two differ only in stopping (with TPE the later proposals
would follow each arm's own results). Prints the trial-epochs each spent and the best healthy
validation SNR each found (common.healthy_snr). From the run with stopping off it then prints each
trial's SNR at ASHA's rungs and at its end, so one sees whether the rungs would have stopped the trial
that ends best: the amplitude losses dip SNR early on. (ASHA compares a trial with those that reached
the rung before it, not with all of them; the rank is a guide.) Last, it replays the stopping-off
run's results through Ray's own ASHAScheduler with other grace periods and reduction factors: the
trials start in the order they did, 2 at a time, each epoch taking as long as it took, so one sees
what each setting would have saved and whether it would have cut the best trial, without a search
each. The replay of the shipped setting next to the measured "stopping on" shows how much the order
in which trials reach a rung moves ASHA's decisions.
"""

from __future__ import annotations

import argparse
import heapq
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace

from common import SEARCH_OK, base_space, healthy_snr, run, search_cmd, table, trial_results, write_space
from ray.tune.schedulers import ASHAScheduler

from tune_codec.names import SCORE

REPLAYED = [(2, 2), (2, 3), (3, 2), (3, 3), (4, 2), (4, 3), (4, 4)]  # ASHA (grace period, reduction factor)


def spent_and_best(folder: Path, band: tuple) -> tuple[int, float, list[list[dict]]]:
    """Trial-epochs spent, best healthy validation SNR (see healthy_snr), and each trial's results."""
    trials = trial_results(folder)
    best = max((healthy_snr(r, band) for results in trials for r in results), default=-math.inf)
    return sum(len(results) for results in trials), best, trials


def rung_table(trials: list[list[dict]], asha: dict, epochs: int, band: tuple) -> str:
    """Each trial's healthy SNR at ASHA's rungs and at the end, with its rank there; -inf: the output
    range was outside band."""

    rungs = [asha["grace_period"]]
    while rungs[-1] * asha["reduction_factor"] < epochs:
        rungs.append(rungs[-1] * asha["reduction_factor"])
    ends = [*rungs, epochs]
    snr = {t[0]["trial_id"]: {r["epoch"]: healthy_snr(r, band) for r in t} for t in trials}
    rank = {e: sorted(snr, key=lambda t, e=e: -snr[t].get(e, -math.inf)) for e in ends}
    rows = [
        (t, *(f"{snr[t][e]:.2f} ({rank[e].index(t) + 1})" if e in snr[t] else "-" for e in ends))
        for t in rank[epochs]
    ]
    return table(("trial", *(f"epoch {e}" for e in ends)), rows)


def replay(trials: list[list[dict]], epochs: int, asha: dict, concurrency: int, band: tuple) -> tuple:
    """Trial-epochs spent, best healthy SNR and trials stopped, had ASHA with these settings judged the
    reported results: trials start in their original order, `concurrency` at a time, and each epoch
    takes as long as it took."""
    scheduler = ASHAScheduler(time_attr="epoch", metric=SCORE, mode="max", max_t=epochs, **asha)
    waiting = sorted(trials, key=lambda t: t[0]["timestamp"] - t[0]["time_this_iter_s"])
    running = []  # heap of (time the epoch ends, trial id, epoch index, results)

    def launch(now: float) -> None:
        if waiting:
            results = waiting.pop(0)
            scheduler.on_trial_add(None, SimpleNamespace(trial_id=results[0]["trial_id"]))
            heapq.heappush(
                running, (now + results[0]["time_this_iter_s"], results[0]["trial_id"], 0, results)
            )

    for _ in range(concurrency):
        launch(0.0)
    spent, best, stopped = 0, -math.inf, 0
    while running:
        now, trial_id, i, results = heapq.heappop(running)
        spent, best = spent + 1, max(best, healthy_snr(results[i], band))
        action = scheduler.on_trial_result(None, SimpleNamespace(trial_id=trial_id), results[i])
        if i + 1 == len(results):
            launch(now)
        elif action == ASHAScheduler.STOP:
            stopped += 1
            launch(now)
        else:
            heapq.heappush(running, (now + results[i + 1]["time_this_iter_s"], trial_id, i + 1, results))
    return spent, best, stopped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8, help="trials per search (default: the space's 8)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed for both searches (default: 0)")
    p.add_argument("--data-dir", help="audio to search on (default: the bundled demo corpus)")
    p.add_argument(
        "--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config values for both searches"
    )
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tune-codec-stopping-"))
    shipped = base_space("amplitude")
    shipped["config"].update(dict(item.split("=", 1) for item in args.set))
    epochs = shipped["config"]["num_epochs"]
    band = tuple(shipped["stop"]["range_ratio"])
    arms = {
        "stopping on": shipped,
        "stopping off": {**shipped, "asha": "off", "stop": {**shipped["stop"], "grace_epochs": epochs}},
    }
    results = {}
    for arm, space in arms.items():
        name = arm.replace(" ", "-")
        space_file = write_space(work, name, space)
        flags = (
            "--name",
            name,
            "--trials",
            str(args.trials),
            "--seed",
            str(args.seed),
            "--sampler",
            "random",
            *(("--data-dir", args.data_dir) if args.data_dir else ()),
        )
        wall, _ = run(search_cmd(space_file, work, *flags), work / f"{name}.log", ok=SEARCH_OK)
        results[arm] = (wall, *spent_and_best(work / "ray" / name, band))
        print(f"{arm}: {wall:.0f} s", flush=True)

    (wall_on, spent_on, best_on, _), (wall_off, spent_off, best_off, trials_off) = results.values()
    print()
    print(
        table(
            ("search", "trial-epochs", "wall s", "best SNR dB"),
            [(arm, spent, f"{wall:.0f}", f"{best:.2f}") for arm, (wall, spent, best, _) in results.items()],
        )
    )
    print(
        f"\nstopping saved {100 * (1 - spent_on / spent_off):.0f}% of the trial-epochs and "
        f"{100 * (1 - wall_on / wall_off):.0f}% of the wall time; best SNR {best_on - best_off:+.2f} dB"
    )

    print(f"\nstopping off: SNR dB at ASHA's rungs and the end (rank of {len(trials_off)} in brackets)")
    print(rung_table(trials_off, shipped["asha"], epochs, band))

    print(f"\nstopping off, replayed through ASHA ({shipped['concurrency']} at a time):")
    rows = []
    for grace, rf in REPLAYED:
        asha = {"grace_period": grace, "reduction_factor": rf}
        spent, best, stopped = replay(trials_off, epochs, asha, shipped["concurrency"], band)
        shipped_mark = " (shipped)" if asha == shipped["asha"] else ""
        rows.append(
            (
                f"{grace}{shipped_mark}",
                rf,
                stopped,
                spent,
                f"{100 * (1 - spent / spent_off):.0f}%",
                f"{best:.2f}",
            )
        )
    print(table(("grace", "reduction", "stopped", "trial-epochs", "saved", "best SNR dB"), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
