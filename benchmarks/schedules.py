"""PBT against TPE + ASHA on real speech, at the same trials and epochs, for several seeds; the best PBT
schedule replayed from scratch by train_codec.py.

    python3 scripts/make_speech_corpus.py --out speech
    python3 benchmarks/schedules.py --corpus speech [--seeds 0 1 2] [--heldout-files 40]

For each seed, on the corpus's train/ files: search_spaces/pbt.yaml as shipped (a population of 6, 9
epochs, perturbed every 3), and search_spaces/amplitude.yaml (TPE proposing, ASHA stopping, as shipped)
with pbt.yaml's trials, epochs and config, so that both may spend the same trial-epochs (ASHA spends
fewer). Each winner's best.pt is then judged on the first --heldout-files files of heldout/ by the
evaluate command, with Opus 8 kbps scored once on the same files. Last, the schedule that the first
seed's PBT search exported is trained from scratch with `train_codec.py --schedule` (one thread, as a
trial trains), and its best validation SNR set beside the PBT trial's. A search that finished in an
earlier run with the same --work is kept, not run again.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import tempfile
from pathlib import Path

from common import SEARCH_OK, base_space, run, search_cmd, table, train_cmd, trial_results, write_space
from real_speech import evaluate

BEST = re.compile(r"best: trial (\S+), best validation SNR (-?[\d.]+) dB")
SCORES = ("SNR dB", "SI-SDR dB", "PESQ", "STOI")


def spaces() -> dict[str, dict]:
    """The two searches: PBT as shipped, and the amplitude space at PBT's trials, epochs and config."""
    pbt, tpe = base_space("pbt"), base_space("amplitude")
    tpe.update(trials=pbt["trials"], config={**tpe["config"], **pbt["config"]})
    return {"pbt": pbt, "tpe+asha": tpe}


def winner(log: Path, folder: Path) -> tuple[str, float, Path]:
    """The search's best trial (from its summary), its best validation SNR and its best.pt."""
    trial_id, snr = BEST.search(log.read_text()).groups()
    (trial_dir,) = [d for d in folder.iterdir() if d.is_dir() and trial_id in d.name]
    return trial_id, float(snr), sorted(trial_dir.glob("checkpoint_*"))[-1] / "best.pt"


def subset(heldout: Path, n: int, folder: Path) -> Path:
    """folder holding links to the first n audio files of heldout (by path)."""
    files = sorted(p for p in heldout.rglob("*") if p.is_file())[:n]
    for path in files:
        link = folder / path.relative_to(heldout)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():  # made by an earlier run in the same --work
            link.symlink_to(path.resolve())
    return folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True, help="make_speech_corpus.py's --out")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--heldout-files", type=int, default=40, help="held-out files to judge on (default: 40)")
    p.add_argument("--work", type=Path, help="keep searches and logs here (default: a temporary folder)")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="tune-codec-schedules-"))
    work.mkdir(parents=True, exist_ok=True)
    heldout = subset(args.corpus / "heldout", args.heldout_files, work / "heldout")
    print(f"work in {work}; judged on {args.heldout_files} files of {args.corpus / 'heldout'}", flush=True)
    rows, replayed, opus = [], None, ["8"]
    for seed in args.seeds:
        for arm, space in spaces().items():
            name = f"{arm}-{seed}"
            flags = ("--name", name, "--seed", str(seed), "--data-dir", str(args.corpus / "train"))
            log, evaluated, timed = work / f"{name}.log", work / f"eval-{name}", work / f"{name}.wall"
            if not (evaluated / "means.csv").exists():  # else finished by an earlier run in this --work
                space_file = write_space(work, name, space)
                wall, _ = run(search_cmd(space_file, work, *flags), log, ok=SEARCH_OK)
                timed.write_text(f"{wall}\n")
                evaluate(
                    winner(log, work / "ray" / name)[2], heldout, evaluated, opus, work / f"eval-{name}.log"
                )
            wall, (trial_id, snr, _) = float(timed.read_text()), winner(log, work / "ray" / name)
            spent = sum(len(results) for results in trial_results(work / "ray" / name))
            means = list(csv.DictReader(open(evaluated / "means.csv")))
            for row in means:
                scores = [f"{float(row[k]):.3g}" for k in SCORES]
                if row["codec"] == "checkpoint":
                    rows.append((seed, arm, spent, f"{wall / 60:.1f}", trial_id, f"{snr:.2f}", *scores))
                else:
                    rows.append(("-", row["codec"], "-", "-", "-", "-", *scores))
            opus = []  # Opus does not depend on the checkpoint: scored once
            print(
                f"{name}: {wall / 60:.1f} min, best {trial_id} at {snr:.2f} dB, {spent} trial-epochs",
                flush=True,
            )
            if arm == "pbt" and replayed is None:
                replayed = (work / "ray" / name / "best_schedule.yaml", snr)

    header = ("seed", "search", "trial-epochs", "wall min", "best trial", "val SNR dB", *SCORES)
    print(f"\nheld-out scores of each search's best ({args.heldout_files} files), Opus 8 kbps beside them")
    print(table(header, rows))
    print("\nmeans over the seeds")
    means = []
    for arm in spaces():
        mine = [r for r in rows if r[1] == arm]
        means.append(
            (arm, *(f"{statistics.mean(float(r[i]) for r in mine):.3g}" for i in (2, 3, 5, 6, 7, 8, 9)))
        )
    print(table(("search", "trial-epochs", "wall min", "val SNR dB", *SCORES), means))

    schedule, searched = replayed
    flags = ("--schedule", str(schedule), "--data_dir", str(args.corpus / "train"))
    log = work / "replay.log"
    wall, _ = run(train_cmd(work, "replay", *flags), log, env={"OMP_NUM_THREADS": "1"})
    (snr,) = re.findall(r"done: best SNR (-?[\d.]+) dB", log.read_text())
    print(
        f"\nreplayed {schedule.name} of seed {args.seeds[0]} with train_codec.py --schedule in "
        f"{wall / 60:.1f} min: best validation SNR {float(snr):.2f} dB against the PBT trial's "
        f"{searched:.2f} dB ({float(snr) - searched:+.2f} dB)"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    raise SystemExit(main())
