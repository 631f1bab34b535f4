"""A corpus larger than the memory a run may use: train_codec.py inside a memory cgroup smaller than its data.

    sudo python benchmarks/streaming.py --corpus speech --hours 26 --limit-gib 2 [--old-tree DIR]

The corpus is tiled to --hours with links to its files. train_codec.py (decode into a new cache, then
one epoch of --steps steps) runs in a new memory cgroup limited to --limit-gib (cgroup v2 memory.max,
or v1 memory.limit_in_bytes; needs root), where the kernel reclaims page cache and kills the run if
what it cannot reclaim exceeds the limit. Printed: the exit status, the time, the cgroup's peak charge
(page cache included, so a run that streams its cache file reaches the limit) and the peak resident
memory of its largest process. With --old-tree, the same command of another checkout of tune-codec
runs under the same limit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, table, tile

V2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
CGROUP = Path("/sys/fs/cgroup") if V2 else Path("/sys/fs/cgroup/memory")


MEASURED = """import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"\\nexit {code} largest peak RSS KiB {kib}", flush=True)"""


def limited(limit: int, name: str) -> Path:
    group = CGROUP / name
    group.mkdir()
    (group / ("memory.max" if V2 else "memory.limit_in_bytes")).write_text(str(limit))
    if not V2:  # no swap to spill to either
        memsw = group / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            memsw.write_text(str(limit))
    return group


def run_in(group: Path, argv: list[str], env: dict, log: Path) -> tuple[str, float, int, int]:
    """(how it exited, seconds, peak bytes charged to the group, its largest process's peak RSS in bytes)."""
    enter = f'echo $$ > {group / "cgroup.procs"} && exec "$@"'
    start = time.perf_counter()
    with log.open("w") as out:  # a fresh Python between: its children's peak RSS is this run's alone
        subprocess.run(
            [sys.executable, "-c", MEASURED, "sh", "-c", enter, "sh", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seconds = time.perf_counter() - start
    peak = group / ("memory.peak" if V2 else "memory.max_usage_in_bytes")
    code, kib = log.read_text().rsplit("\nexit ", 1)[-1].split(" largest peak RSS KiB ")
    ended = f"killed ({signal.Signals(-int(code)).name})" if int(code) < 0 else f"exit {code}"
    return ended, seconds, int(peak.read_text()) if peak.exists() else -1, int(kib) * 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True, help="folder of audio to tile")
    p.add_argument("--hours", type=float, default=26, help="tile the corpus to about this (default: 26)")
    p.add_argument("--limit-gib", type=float, default=2, help="the cgroup's memory limit (default: 2)")
    p.add_argument("--steps", type=int, default=100, help="training steps (default: 100)")
    p.add_argument("--old-tree", type=Path, help="another checkout, run under the same limit")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tune-codec-streaming-"))
    sys.path.insert(0, str(ROOT))
    from tune_codec.config import DEFAULTS
    from tune_codec.data.corpus import load_corpus

    rate = DEFAULTS.sample_rate
    seconds = load_corpus(args.corpus, rate, work / "base").lengths.sum() / rate
    copies = max(1, round(args.hours * 3600 / seconds))
    tile(args.corpus, copies, work / "corpus")
    hours = copies * seconds / 3600
    gib = hours * 3600 * rate * 4 / 2**30
    print(f"corpus: {copies} x {args.corpus} = {hours:.1f} h, {gib:.2f} GiB as float32", flush=True)
    trees = {"this tree": ROOT, **({"old tree": args.old_tree.resolve()} if args.old_tree else {})}
    rows = []
    try:
        for i, (label, tree) in enumerate(trees.items()):
            group = limited(int(args.limit_gib * 2**30), f"tune-codec-{os.getpid()}-{i}")
            command = [
                sys.executable, str(tree / "train_codec.py"), "--data_dir", str(work / "corpus"),
                "--cache_dir", str(work / f"cache{i}"), "--checkpoint_dir", str(work / f"ckpt{i}"),
                "--num_epochs", "1", "--max_steps_per_epoch", str(args.steps),
                "--tracking-uri", str(work / f"mlflow{i}.db"),
            ]  # fmt: skip
            env = {**os.environ, "PYTHONPATH": str(tree)}
            code, took, peak, largest = run_in(group, command, env, work / f"{i}.log")
            lines = (work / f"{i}.log").read_text().replace("\r", "\n").splitlines()
            last = [line for line in lines if line.strip() and not line.startswith("exit ")][-1:]
            sizes = f"{peak / 2**30:.2f}", f"{largest / 2**30:.2f}"
            rows.append((label, code, f"{took:.0f}", *sizes, " ".join(last)[:90]))
            print(f"{label}: {code} after {took:.0f} s", flush=True)
            for _ in range(100):  # its last processes (the decoding server) may take a moment to go
                with contextlib.suppress(OSError):
                    group.rmdir()
                    break
                time.sleep(0.1)
            shutil.rmtree(work / f"cache{i}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    header = ("code", "ended", "seconds", "cgroup peak GiB", "largest process peak RSS GiB", "last output")
    print(table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
