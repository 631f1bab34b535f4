"""Decoding hours of audio: time in 1 and 2 processes, the cached second load, and the loader's peak memory.

    python benchmarks/decoding.py --corpus speech --hours 1 6.6 26

The corpus (e.g. the one scripts/make_speech_corpus.py writes) is tiled to each size with links to its
files, one folder per copy. Each load runs tune_codec.data.load_data as its own process, with a new
cache folder for the decodes and the 2-process cache for the cached load; "split" is segmenting and
splitting the decoded corpus (read back from the cache file); its peak resident memory (VmHWM) is read
at its end. "segments" is the float32 size of the train and validation segments the
split yields (what the loader once held in memory); "cache" is the int16 file on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import table, tile

CHILD = """
import json, sys, time
from pathlib import Path
from tune_codec.config import DEFAULTS
from tune_codec.data.corpus import load_corpus
from tune_codec.data.segments import split
before = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
t0 = time.perf_counter()
corpus = load_corpus(Path(sys.argv[1]), DEFAULTS.sample_rate, Path(sys.argv[2]), int(sys.argv[3]))
t1 = time.perf_counter()
data = split(corpus, DEFAULTS)
t2 = time.perf_counter()
peak = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])
n = len(data.train) + len(data.valid)
hours = float(corpus.lengths.sum()) / DEFAULTS.sample_rate / 3600
print(json.dumps({"load_s": t1 - t0, "split_s": t2 - t1, "peak_kib": peak, "imports_kib": before,
                  "segments_bytes": n * DEFAULTS.segment_samples * 4, "files": len(corpus.names),
                  "cache_bytes": corpus.path.stat().st_size, "hours": hours}))
"""


def load(corpus: Path, cache: Path, processes: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(corpus), str(cache), str(processes)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True, help="folder of audio to tile")
    p.add_argument("--hours", type=float, nargs="+", default=[1, 6.6, 26], help="sizes (default: 1 6.6 26)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tune-codec-decoding-"))
    try:
        base = load(args.corpus, work / "base", 1)["hours"]
        print(f"{args.corpus}: {base:.2f} h; work in {work}; {len(os.sched_getaffinity(0))} CPUs", flush=True)
        rows = []
        for hours in args.hours:
            copies = max(1, round(hours / base))
            corpus = work / f"tiles{copies}"
            tile(args.corpus, copies, corpus)
            one = load(corpus, work / f"one{copies}", 1)
            shutil.rmtree(work / f"one{copies}")
            two = load(corpus, work / f"two{copies}", 2)
            cached = load(corpus, work / f"two{copies}", 2)
            shutil.rmtree(work / f"two{copies}")
            seg_gib, gib = two["segments_bytes"] / 2**30, 2**20
            rows.append(
                (
                    f"{two['hours']:.1f}",
                    two["files"],
                    f"{seg_gib:.2f}",
                    f"{two['cache_bytes'] / 2**30:.2f}",
                    f"{one['load_s']:.1f}",
                    f"{two['load_s']:.1f}",
                    f"{one['load_s'] / two['load_s']:.2f}",
                    f"{two['split_s']:.1f}",
                    f"{cached['load_s'] + cached['split_s']:.1f}",
                    f"{two['peak_kib'] / gib:.2f}",
                    f"{(two['peak_kib'] - two['imports_kib']) / gib:.2f}",
                    f"{cached['peak_kib'] / gib:.2f}",
                )
            )
            print(f"{hours:g} h done", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = (
        "hours",
        "files",
        "segments GiB",
        "cache GiB",
        "decode 1 process s",
        "decode 2 processes s",
        "speed-up",
        "split s",
        "cached load+split s",
        "peak GiB",
        "peak-imports GiB",
        "cached peak GiB",
    )
    print()
    print(table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
