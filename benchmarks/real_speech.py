"""The hand fix against searches' best configs, on real speech, with Opus beside them.

    python3 scripts/make_speech_corpus.py --out speech
    python3 -m tune_codec.run --space search_spaces/amplitude.yaml      # writes its best_config.yaml
    python3 benchmarks/real_speech.py --corpus speech --search-best ray_results/amplitude/best_config.yaml
    python3 benchmarks/real_speech.py --corpus speech --search-best amplitude_best.yaml \
        --terms-best ray_results/adversarial/best_config.yaml --minutes 45 --together

Each config is trained with train_codec.py on the corpus's train/ files, for the same number of epochs
(--epochs: the same codec, so the same steps) or for the same wall time (--minutes: stopped with Ctrl-C,
its best.pt judged), one after another or all at once with one CPU thread each (--together: each gets
an equal share of the machine), then judged on its heldout/ files by the evaluate command, with Opus at
each --opus-kbps on the same files in the same run. A search's best keeps what the search chose and
fixed; the caps its short trials ran under (epochs, steps per epoch, validation length) are lifted.
"""

from __future__ import annotations

import argparse
import csv
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import run, start, table, train_cmd, wait

from tune_codec.config import DEFAULTS, make_config, to_flags

TRIAL_CAPS = ("num_epochs", "max_steps_per_epoch", "valid_max_seconds")  # a search's, not the config's
SCORES = ("kbps", "SNR dB", "SI-SDR dB", "PESQ", "STOI", "mel distance")


def configs(args) -> dict[str, list[str]]:
    """Name -> train_codec.py flags."""
    epochs = str(args.epochs if not args.minutes else 10_000)  # with a time budget, the clock stops it
    named = {"hand fix": []}  # the defaults: L1 1, rms 10, peak 5, mel 0
    for name, path in (("search's best", args.search_best), ("with the new terms", args.terms_best)):
        if path:
            found = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k not in TRIAL_CAPS}
            named[name] = to_flags(make_config(found))
    return {name: [*flags, "--num_epochs", epochs] for name, flags in named.items()}


def evaluate(checkpoint: Path, heldout: Path, out: Path, opus: list[str], log: Path) -> list[dict]:
    reference = ["--opus-kbps", *opus] if opus else ["--reference", "none"]
    cmd = [sys.executable, "-m", "tune_codec.evaluate", str(checkpoint), str(heldout), *reference]
    run([*cmd, "--out", str(out)], log)
    return list(csv.DictReader(open(out / "means.csv")))


def train_all(named: dict[str, list[str]], args, work: Path) -> dict[str, float]:
    """Train every config; name -> wall minutes."""
    cmds = {
        name: train_cmd(work, str(i), "--data_dir", str(args.corpus / "train"), *flags)
        for i, (name, flags) in enumerate(named.items())
    }
    env = {"OMP_NUM_THREADS": "1"} if args.together else None
    ok = (0, 130) if args.minutes else (0,)  # 130: stopped by the clock, as Ctrl-C stops it
    minutes = {}
    batches = [list(cmds)] if args.together else [[name] for name in cmds]
    for batch in batches:
        t0 = time.monotonic()
        procs = {
            name: start(cmds[name], work / f"train{list(cmds).index(name)}.log", env)[0] for name in batch
        }
        if args.minutes:
            while time.monotonic() - t0 < args.minutes * 60 and any(p.poll() is None for p in procs.values()):
                time.sleep(5)
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
        for name, proc in procs.items():
            wait(proc, work / f"train{list(cmds).index(name)}.log", ok=ok)
            minutes[name] = (time.monotonic() - t0) / 60
            print(
                f"trained {name} for {minutes[name]:.1f} min: python3 train_codec.py {' '.join(named[name])}"
            )
    return minutes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True, help="make_speech_corpus.py's --out")
    p.add_argument("--search-best", type=Path, required=True, help="a search's best_config.yaml")
    p.add_argument("--terms-best", type=Path, help="the best_config.yaml of a search with the new terms")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--minutes", type=float, help="train each this long instead of --epochs")
    p.add_argument("--together", action="store_true", help="train all at once, one CPU thread each")
    p.add_argument("--opus-kbps", nargs="+", default=["8", "6"])
    p.add_argument("--work", type=Path, help="keep checkpoints and logs here (default: a temporary folder)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="real-speech-"))
    work.mkdir(parents=True, exist_ok=True)
    budget = f"{args.minutes:g} min" if args.minutes else f"{args.epochs} epochs"
    print(f"codec: {DEFAULTS.describe()}; {budget} each on {args.corpus / 'train'}; work in {work}")
    named = configs(args)
    minutes = train_all(named, args, work)
    rows, opus = [], list(args.opus_kbps)
    for i, name in enumerate(named):
        means = evaluate(
            work / "runs" / str(i) / "best.pt",
            args.corpus / "heldout",
            work / f"eval{i}",
            opus,
            work / f"eval{i}.log",
        )
        for row in means:
            label = name if row["codec"] == "checkpoint" else row["codec"]
            rows.append(
                (
                    label,
                    f"{minutes[name]:.1f}" if row["codec"] == "checkpoint" else "-",
                    row["files"],
                    *(f"{float(row[k]):.3g}" for k in SCORES),
                )
            )
        opus = []  # Opus does not depend on the checkpoint: scored once
    rows.sort(key=lambda row: row[0].startswith("opus"))
    print(table(("codec", "train min", "files", *SCORES), rows))


if __name__ == "__main__":
    main()
