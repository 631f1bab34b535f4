"""Held-out quality against training CPU-minutes: the best SEANet and the freq codecs, Opus beside them.

    python3 scripts/make_speech_corpus.py --out speech     # with the fr and it packages: unseen voices
    python3 benchmarks/quality_per_hour.py --corpus speech --minutes 15,30 --work qph
    python3 benchmarks/quality_per_hour.py --corpus speech --minutes 15,30,60,120 --work qph   # later rows

Each codec trains once with train_codec.py on the corpus's train/ (one speaker, Allison, en and es),
its clock the training process's CPU time over 2 (2-core minutes: what an idle 2-core machine gives in a
wall minute; the CPU is shared, so the wall clock would charge a codec for others' work). At each mark of
--minutes its best.pt so far (by its config's best_metric) is kept, and each kept checkpoint is judged by
the evaluate command on two sets: heldout/ (the trained speaker's prompts that training never saw) and a
fixed subset of unseen/ (--unseen-files per voice: June fr-CA, Carlo it-IT, ru-RU; speakers and
languages training never heard), with Opus at each --opus-kbps on the same files in the same run. A
larger --minutes with the same --work resumes each codec from its last.pt and clock (the partial epoch
at the stop is lost) and judges only the new marks: everything done is kept in WORK/results.json.
Prints one table and writes a PNG of the three scores against the minutes (--png).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
from common import ROOT, run, start, table, train_cmd, wait

from tune_codec.config import load_config, to_flags

# name -> a named config or YAML file: the best SEANet measured here (the amplitude search's trial
# 829d9b32 weights, docs/BENCHMARKS.md) and the CPU tier's freq codecs at 8 and 6 kbps
CODECS = {
    "best seanet": ROOT / "benchmarks" / "seanet_best.yaml",
    "best freq": "cpu-freq-8kbps",
    "freq 6 kbps": "cpu-freq-6kbps",
}
SCORES = {"SI-SDR dB": "SI-SDR", "PESQ": "PESQ-WB", "STOI": "STOI"}
CORES = 2
POLL_S = 5
EPOCH_STEPS = 100  # a validation (about 10 s of a codec's minute) every 100 steps of batch 16


def cpu_minutes(pid: int) -> float:
    """CPU time of a process and its reaped children over CORES, in minutes; 0 once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK") / 60 / CORES


def unseen_subset(corpus: Path, per_voice: int, folder: Path) -> Path:
    """folder/VOICE/...: links to per_voice files of each unseen voice, the same ones every run (by hash)."""
    for voice in sorted(p for p in (corpus / "unseen").iterdir() if p.is_dir()):
        files = sorted(voice.rglob("*.flac"), key=lambda p: hashlib.sha1(p.name.encode()).hexdigest())
        for path in files[:per_voice]:
            link = folder / voice.name / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                os.symlink(path.resolve(), link)
    return folder


def train(name: str, flags: list[str], marks: list[float], folder: Path, corpus: Path, work: Path) -> None:
    """Train (or resume) until the last mark, copying best.pt to folder/at_<m>.pt at each mark; the clock
    and the marks passed are kept in folder/clock.json."""
    clock_file = folder / "clock.json"
    clock = json.loads(clock_file.read_text()) if clock_file.exists() else {"saved_min": 0.0, "wall_min": 0.0}
    todo = [m for m in marks if not (folder / f"at_{m:g}.pt").exists()]
    if not todo:
        return
    resume = ["--resume"] if (folder / "last.pt").exists() else []
    cmd = train_cmd(work, folder.name, "--data_dir", str(corpus / "train"), *flags, *resume)
    # passive: a thread waiting for the other sleeps instead of spinning, so that on a shared machine the
    # CPU time is the codec's work, not its wait for a core
    env = {"OMP_NUM_THREADS": str(CORES), "OMP_WAIT_POLICY": "PASSIVE"}
    offset, wall0, t0 = clock["saved_min"], clock["wall_min"], time.monotonic()
    proc, _ = start(cmd, work / f"{folder.name}.log", env)
    last_saved = (folder / "last.pt").stat().st_mtime if resume else 0.0
    while todo and proc.poll() is None:
        time.sleep(POLL_S)
        used = offset + cpu_minutes(proc.pid)
        saved = (folder / "last.pt").stat().st_mtime if (folder / "last.pt").exists() else 0.0
        if saved != last_saved:  # an epoch ended: a resume continues from here
            last_saved, clock["saved_min"] = saved, used
            clock["wall_min"] = wall0 + (time.monotonic() - t0) / 60
            clock_file.write_text(json.dumps(clock))
        while todo and used >= todo[0]:
            shutil.copy(folder / "best.pt", folder / f"at_{todo[0]:g}.pt")
            clock[f"wall_at_{todo[0]:g}"] = wall0 + (time.monotonic() - t0) / 60
            clock_file.write_text(json.dumps(clock))
            print(f"{name}: {todo.pop(0):g} CPU-min reached ({used:.1f})", flush=True)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    wait(proc, work / f"{folder.name}.log", ok=(0, 130))
    if todo:
        sys.exit(f"{name} stopped before {todo[0]:g} CPU-minutes: see {work / f'{folder.name}.log'}")


def evaluate(checkpoint: Path, data: Path, opus_kbps: list[str], out: Path) -> list[dict]:
    """The evaluate command's means: the checkpoint's row, and Opus's at each of opus_kbps."""
    reference = ["--opus-kbps", *opus_kbps] if opus_kbps else ["--reference", "none"]
    cmd = [
        sys.executable,
        "-m",
        "tune_codec.evaluate",
        str(checkpoint),
        str(data),
        *reference,
        "--out",
        str(out),
    ]
    run(cmd, out.with_suffix(".log"))
    return list(csv.DictReader(open(out / "means.csv")))


def plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({row["set"] for row in results["rows"]})
    fig, axes = plt.subplots(
        len(sets), len(SCORES), figsize=(4 * len(SCORES), 3.2 * len(sets)), squeeze=False
    )
    for i, where in enumerate(sets):
        for j, (score, label) in enumerate(SCORES.items()):
            ax = axes[i][j]
            for codec in dict.fromkeys(row["codec"] for row in results["rows"]):
                rows = sorted((r for r in results["rows"] if r["codec"] == codec and r["set"] == where),
                              key=lambda r: r["minutes"])  # fmt: skip
                ax.plot([r["minutes"] for r in rows], [r[score] for r in rows], "o-", label=codec)
            for k, (name, row) in enumerate(results["opus"].get(where, {}).items()):
                ax.axhline(row[score], color="gray", linestyle=("--", ":")[k % 2], label=name)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("training CPU-minutes (2 cores)")
            ax.set_title(f"{label}, {where}")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True, help="make_speech_corpus.py's --out")
    p.add_argument("--minutes", default="15,30,60,120", help="CPU-minute marks (default: 15,30,60,120)")
    p.add_argument(
        "--codec", nargs="*", metavar="NAME=CONFIG", help=f"codecs to train (default: {', '.join(CODECS)})"
    )
    p.add_argument("--opus-kbps", nargs="+", default=["8", "6"])
    p.add_argument("--unseen-files", type=int, default=30, help="files per unseen voice (default: 30)")
    p.add_argument("--work", type=Path, default=Path("qph"), help="checkpoints, logs and results.json")
    p.add_argument("--png", type=Path, default=ROOT / "docs" / "quality_per_hour.png")
    args = p.parse_args()
    marks = sorted(float(m) for m in args.minutes.split(","))
    codecs = dict(c.split("=", 1) for c in args.codec) if args.codec else CODECS
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results_file = work / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {"rows": [], "opus": {}}
    sets = {
        "held-out prompts": args.corpus.resolve() / "heldout",
        "unseen voices": unseen_subset(args.corpus.resolve(), args.unseen_files, work / "unseen"),
    }
    for name, source in codecs.items():
        config = load_config(str(source))
        # the clock stops it; epochs of EPOCH_STEPS keep each mark's best.pt at most that many steps old
        flags = [*to_flags(config), "--num_epochs", "100000", "--max_steps_per_epoch", str(EPOCH_STEPS)]
        print(f"{name}: {config.describe()}; {' '.join(flags)}", flush=True)
        slug = name.replace(" ", "-")
        folder = work / "runs" / slug
        train(name, flags, marks, folder, args.corpus.resolve(), work)
        for m in marks:
            for where, data in sets.items():
                if any(
                    r["codec"] == name and r["minutes"] == m and r["set"] == where for r in results["rows"]
                ):
                    continue
                opus = [] if where in results["opus"] else args.opus_kbps
                means = evaluate(folder / f"at_{m:g}.pt", data, opus, work / f"eval_{slug}_{m:g}_{where[0]}")
                ckpt = torch.load(folder / f"at_{m:g}.pt", map_location="cpu", weights_only=False)
                clock = json.loads((folder / "clock.json").read_text())
                for row in means:
                    scores = {k: float(row[k]) for k in SCORES} | {
                        "kbps": float(row["kbps"]),
                        "files": row["files"],
                    }
                    if row["codec"] == "checkpoint":
                        results["rows"].append(
                            {"codec": name, "minutes": m, "set": where, "epoch": ckpt["metrics"]["epoch"],
                             "wall_min": clock[f"wall_at_{m:g}"], **scores}
                        )  # fmt: skip
                    else:
                        results["opus"].setdefault(where, {})[row["codec"]] = scores
                results_file.write_text(json.dumps(results, indent=1))
    rows = [
        (r["codec"], f"{r['minutes']:g}", f"{r['wall_min']:.0f}", r["epoch"], r["set"], r["files"],
         f"{r['kbps']:.2f}", *(f"{r[k]:.3g}" for k in SCORES))
        for r in sorted(results["rows"], key=lambda r: (r["set"], r["codec"], r["minutes"]))
    ]  # fmt: skip
    rows += [
        (name, "-", "-", "-", where, r["files"], f"{r['kbps']:.2f}", *(f"{r[k]:.3g}" for k in SCORES))
        for where, named in sorted(results["opus"].items())
        for name, r in named.items()
    ]
    header = ("codec", "CPU min", "wall min", "best epoch", "judged on", "files", "kbps", *SCORES)
    print(table(header, rows))
    plot(results, args.png)
    print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
