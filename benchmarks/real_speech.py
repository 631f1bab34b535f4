"""The hand fix against the amplitude search's best, on real speech, with Opus beside them.

    python3 scripts/make_speech_corpus.py --out speech
    python3 -m tune_codec.run --space search_spaces/amplitude.yaml      # writes its best_config.yaml
    python3 benchmarks/real_speech.py --corpus speech --search-best ray_results/amplitude/best_config.yaml

Both configs are trained with train_codec.py on the corpus's train/ files for the same number of epochs
(the same codec, so the same steps: the same budget), then judged on its heldout/ files by the evaluate
command, with Opus at each --opus-kbps on the same files in the same run. The search's best keeps its
loss weights and learning rate; its epochs are set to --epochs like the hand fix's.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import yaml
from common import run, table, train_cmd

from tune_codec.config import DEFAULTS, make_config, to_flags
from tune_codec.schedule import MUTABLE

SEARCHED = MUTABLE  # what the search chose (loss weights, learning rate); the rest is the default codec
SCORES = ("kbps", "SNR dB", "SI-SDR dB", "PESQ", "STOI", "mel distance")


def configs(search_best: Path, epochs: int) -> dict[str, list[str]]:
    """Name -> train_codec.py flags."""
    found = make_config(yaml.safe_load(search_best.read_text()))
    best = make_config({k: getattr(found, k) for k in SEARCHED})
    return {
        "hand fix": ["--num_epochs", str(epochs)],  # the defaults: L1 1, rms 10, peak 5, mel 0
        "search's best": [*to_flags(best), "--num_epochs", str(epochs)],
    }


def evaluate(checkpoint: Path, heldout: Path, out: Path, opus: list[str], log: Path) -> list[dict]:
    reference = ["--opus-kbps", *opus] if opus else ["--reference", "none"]
    cmd = [sys.executable, "-m", "tune_codec.evaluate", str(checkpoint), str(heldout), *reference]
    run([*cmd, "--out", str(out)], log)
    return list(csv.DictReader(open(out / "means.csv")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True, help="make_speech_corpus.py's --out")
    p.add_argument("--search-best", type=Path, required=True, help="a search's best_config.yaml")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--opus-kbps", nargs="+", default=["8", "6"])
    p.add_argument("--work", type=Path, help="keep checkpoints and logs here (default: a temporary folder)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="real-speech-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"codec: {DEFAULTS.describe()}; {args.epochs} epochs on {args.corpus / 'train'}; work in {work}")
    rows, opus = [], list(args.opus_kbps)
    for i, (name, flags) in enumerate(configs(args.search_best, args.epochs).items()):
        cmd = train_cmd(work, str(i), "--data_dir", str(args.corpus / "train"), *flags)
        seconds, _ = run(cmd, work / f"train{i}.log")
        print(f"trained {name} in {seconds / 60:.1f} min: python3 train_codec.py {' '.join(flags)}")
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
                    f"{seconds / 60:.1f}" if row["codec"] == "checkpoint" else "-",
                    row["files"],
                    *(f"{float(row[k]):.3g}" for k in SCORES),
                )
            )
        opus = []  # Opus does not depend on the checkpoint: scored once
    rows.sort(key=lambda row: row[0].startswith("opus"))
    print(table(("codec", "train min", "files", *SCORES), rows))


if __name__ == "__main__":
    main()
