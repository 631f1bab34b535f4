"""What the benchmarks share: running a search or a training run as its own process, reading back what
its trials reported, resident memory from /proc, and printing a table."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process in MiB, from /proc; zeros once it has exited. PSS splits the pages it
    shares with other processes (Ray's object store, libraries) among them."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    except OSError:
        return 0.0, 0.0
    fields = dict(line.split(":", 1) for line in lines)
    return int(fields["Rss"].split()[0]) / 1024, int(fields["Pss"].split()[0]) / 1024


def tile(source: Path, copies: int, folder: Path) -> None:
    """folder/copy<i>/... : `copies` copies of source's files, as links (a corpus of any size from one)."""
    files = sorted(p for p in Path(source).rglob("*") if p.is_file())
    for i in range(copies):
        for path in files:
            link = folder / f"copy{i}" / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path.resolve(), link)


def base_space(name: str = "smoke") -> dict:
    """A bundled search space as a dict, to change and write with write_space."""
    return yaml.safe_load((ROOT / "search_spaces" / f"{name}.yaml").read_text())


def write_space(work: Path, name: str, space: dict) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def search_cmd(space_file: Path, work: Path, *extra: str) -> list[str]:
    """`python -m tune_codec.run` with its storage, MLflow store and audio cache under work."""
    return [
        sys.executable, "-m", "tune_codec.run", "--space", str(space_file),
        "--storage-path", str(work / "ray"), "--tracking-uri", str(work / "mlflow.db"),
        "--cache-dir", str(work / "cache"), *extra,
    ]  # fmt: skip


def train_cmd(work: Path, run: str, *flags: str) -> list[str]:
    """`python train_codec.py` with its checkpoints, MLflow store and audio cache under work."""
    return [
        sys.executable, str(ROOT / "train_codec.py"), "--checkpoint_dir", str(work / "runs" / run),
        "--tracking_uri", str(work / "mlflow.db"), "--cache_dir", str(work / "cache"), *flags,
    ]  # fmt: skip


def start(cmd: list[str], log: Path, env: dict | None = None) -> tuple[subprocess.Popen, list]:
    """Start cmd with its output going to log; the list fills with (seconds since start, line) as the
    command prints them."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=log.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        # a benchmark started in the background (nohup ... &) ignores SIGINT, and its children would
        # inherit that: Python then installs no Ctrl-C handler, and a clock's SIGINT stops nothing
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        with open(log, "w") as out:
            for line in proc.stdout:
                lines.append((time.monotonic() - t0, line.rstrip("\n")))
                out.write(line)

    proc.reader = threading.Thread(target=read, daemon=True)
    proc.reader.start()
    return proc, lines


def wait(proc: subprocess.Popen, log: Path, poll=None, every: float = 0.5, ok: tuple = (0,)) -> None:
    """Wait for a command from start() and its last line, calling poll(pid) every `every` seconds; exit
    the benchmark with the log's tail if its exit code is not in ok."""
    while poll is not None and proc.poll() is None:
        poll(proc.pid)
        time.sleep(every)
    proc.wait()
    proc.reader.join()
    if proc.returncode not in ok:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        sys.exit(f"{' '.join(map(str, proc.args))} exited {proc.returncode}:\n{tail}")


def run(cmd: list[str], log: Path, env: dict | None = None, **wait_args) -> tuple[float, list]:
    """Run cmd to its end: its wall seconds and its timed lines (see start and wait)."""
    t0 = time.monotonic()
    proc, lines = start(cmd, log, env)
    wait(proc, log, **wait_args)
    return time.monotonic() - t0, lines


SEARCH_OK = (0, 1)  # tune_codec.run exits 1 when every trial collapsed: a result, not a failure


def when(lines: list, prefix: str) -> float:
    """Seconds from the start until the first line starting with prefix."""
    return next(t for t, line in lines if line.startswith(prefix))


def trial_results(folder: Path) -> list[list[dict]]:
    """Each trial's reported results, in order, from the Ray experiment folder."""
    trials = []
    for path in sorted(folder.glob("*/result.json")):
        results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if results:
            trials.append(results)
    return trials


def healthy_snr(result: dict, band: tuple[float, float]) -> float:
    """A reported epoch's validation SNR, or -inf if the epoch carries a stop reason (collapse,
    non-finite) or its output range is outside band (the space's stop.range_ratio, also applied within
    the grace epochs): a quiet, collapsing output scores near 0 dB, above a healthy codec's first epochs."""
    low, high = band
    if result.get("stop/reason") or not low <= result["val/range_ratio"] <= high:
        return -math.inf
    return result["val/snr_db"]


def table(header: tuple[str, ...], rows: list[tuple]) -> str:
    """Columns padded to their widest cell: tune_codec.run's summary table, without trailing spaces."""
    from tune_codec.cli import format_table  # here, so that importing common stays light (memory.py)

    text = format_table([dict(zip(header, map(str, row), strict=True)) for row in rows])
    return "\n".join(line.rstrip() for line in text.splitlines())
