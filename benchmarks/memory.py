"""Memory: the driver's and each trial's resident memory for 1, 2 and 4 trials at once.

    python benchmarks/memory.py [--corpus speech --hours 6.6]

The corpus is the bundled demo corpus linked 8 times, or --corpus tiled to --hours with links to its
files. For 1, 2 and 4 trials at once (each holding 2/N CPUs, one epoch of 4 steps), a Tune driver runs
tune_codec.run's trial function as tune_codec.run does: the driver loads the data (positions in the
decoded-audio cache, which every trial memory-maps) and passes it to the trials. The driver runs as
its own process; its resident memory and that of each trial's worker are sampled every 0.25 s. PSS
splits pages shared between processes (the cache file's pages, shared libraries) among them, so the
PSS sum is what the machine really holds. For scale it first prints the resident memory of a bare
Python process that imports what a trial's worker imports (tune_codec.run: torch, Ray Tune, MLflow,
Optuna), and of one that imports torch alone.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from common import memory_mib, start, table, tile, wait


def tree(root: int) -> dict[int, str]:
    """root and all its descendants: pid -> command line."""
    parent, cmdline = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    found, frontier = {root}, [root]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier and p not in found]
        found.update(kids)
        frontier = kids
    return {p: cmdline.get(p, "") for p in found}


def import_mib(module: str) -> float:
    """RSS in MiB of a fresh Python process once it has imported module."""
    code = f"import {module}, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import common, os; "
    code += "print(common.memory_mib(os.getpid())[0])"
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def measure(trials: int, corpus: Path, work: Path) -> dict:
    """Run one driver to its end: peak RSS and PSS of the driver and of each trial worker, and the peak
    of the PSS summed over the driver and everything it started."""
    cmd = [sys.executable, __file__, "--driver", "--trials", str(trials), "--corpus", str(corpus)]
    peaks: dict[int, list[float]] = {}  # pid -> [RSS, PSS]
    total, workers = [0.0], set()

    def sample(driver: int) -> None:
        procs = tree(driver)
        sizes = {pid: memory_mib(pid) for pid in procs}
        for pid, size in sizes.items():
            peaks[pid] = [max(a, b) for a, b in zip(peaks.get(pid, (0.0, 0.0)), size, strict=True)]
            if "ImplicitFunc" in procs[pid]:  # a trial's worker
                workers.add(pid)
        total[0] = max(total[0], sum(pss for _, pss in sizes.values()))

    proc, _ = start([*cmd, "--work", str(work)], work / f"{trials}.log")
    wait(proc, work / f"{trials}.log", poll=sample, every=0.25)
    n = max(len(workers), 1)
    return {
        "driver": peaks[proc.pid],
        "trial": [sum(peaks[w][i] for w in workers) / n for i in (0, 1)],
        "total": total[0],
        "workers": len(workers),
    }


def drive(trials: int, corpus: Path, work: Path) -> None:
    """The driver process: Ray as tune_codec.run starts it, `trials` one-epoch trials at once."""
    import ray
    from ray import tune

    from tune_codec.config import DEFAULTS
    from tune_codec.data.segments import load_data
    from tune_codec.search.driver import start_ray
    from tune_codec.search.stopping import StopRules
    from tune_codec.search.trial import trial

    cpus = 2 / trials
    start_ray(SimpleNamespace(address=None, cpus_per_trial=cpus, gpus_per_trial=0), trials)
    data = ray.put(load_data(corpus, DEFAULTS, work / "cache"))  # as tune_codec.run does
    trainable = tune.with_parameters(trial, data=data, rules=StopRules(), metric="val/snr_db", devices=cpus)
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus}),
        param_space={"num_epochs": 1, "max_steps_per_epoch": 4},
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=trials),
        run_config=tune.RunConfig(name=f"trials-{trials}", storage_path=str(work / "ray"), verbose=0),
    ).fit()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, help="folder of audio to tile (default: the demo corpus)")
    p.add_argument("--hours", type=float, help="tile --corpus to about this many hours")
    p.add_argument("--copies", type=int, default=8, help="copies of the demo corpus (default: 8)")
    p.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--trials", type=int, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.driver:
        drive(args.trials, args.corpus, args.work)
        return 0

    from tune_codec.config import DEFAULTS
    from tune_codec.data.corpus import load_corpus
    from tune_codec.data.segments import DEMO_CORPUS, load_data

    work = Path(tempfile.mkdtemp(prefix="tune-codec-memory-"))
    source, copies = args.corpus or DEMO_CORPUS, args.copies
    if args.hours:
        hours = (
            load_corpus(source, DEFAULTS.sample_rate, work / "cache").lengths.sum()
            / DEFAULTS.sample_rate
            / 3600
        )
        copies = max(1, round(args.hours / hours))
    corpus = work / "corpus"
    tile(source, copies, corpus)
    data = load_data(corpus, DEFAULTS, work / "cache")  # decoded once, into the cache the drivers read
    size = (len(data.train) + len(data.valid)) * DEFAULTS.segment_samples * 4 / 2**20
    print(f"corpus: {copies} x {source}, {size:.0f} MiB of float32 segments; work in {work}", flush=True)

    for module in ("tune_codec.run", "torch"):
        print(f"a Python process that imports {module}: {import_mib(module):.0f} MiB RSS", flush=True)
    rows = []
    for trials in (1, 2, 4):
        m = measure(trials, corpus, work)
        rss, pss = m["trial"]
        rows.append((trials, f"{m['driver'][0]:.0f}", f"{rss:.0f}", f"{pss:.0f}", f"{m['total']:.0f}"))
        print(f"{trials} trials: {m['workers']} trial workers seen", flush=True)
    print()
    print(table(("trials", "driver RSS MiB", "trial RSS MiB", "trial PSS MiB", "all PSS MiB"), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
