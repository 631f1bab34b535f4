"""Audio files -> one cache of every file's mono audio at one rate, as int16, decoded in parallel.

The cache is a folder per corpus (its files' names, sizes and times, and the rate): audio.i16 holds every
file end to end as int16, half the bytes of float32 (a 16-bit file at the target rate is kept exactly;
other sources lose what lies below 16 bits), and meta.json each file's offset, length, scale and DC
offset, and why each file that could not be used was skipped. Both are written whole and renamed into
place, meta.json last: a folder without it is an interrupted decode and is decoded again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from tune_codec.errors import DataError
from tune_codec.files import atomic_write, nearest_existing

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when the cache changes meaning
AUDIO, META = "audio.i16", "meta.json"
FULL_SCALE = 32768
BYTES_PER_PROCESS = 32 * 2**20  # of audio files: a corpus smaller than this is decoded in one process
UNREADABLE = (RuntimeError, sf.LibsndfileError, EOFError)  # what soundfile raises on a bad file
AUDIO_SUFFIXES = {f".{f.lower()}" for f in sf.available_formats()} | {".aif", ".oga", ".opus"}


def default_cache_dir() -> Path:
    root = os.environ.get("TUNE_CODEC_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(root) / "tune-codec" if root else Path.home() / ".cache" / "tune-codec"


def find_audio(root: Path) -> list[Path]:
    """Every file under root that soundfile can read, by suffix, sorted. Symlinked folders are followed
    and each real folder is read once: a link back up the tree, or a second way to the same folder, is
    skipped with a warning (its files would loop, or be counted twice and straddle the split)."""
    if not root.is_dir():
        raise DataError(f"data directory {str(root)!r} does not exist or is not a directory")
    found, seen = [], {}  # (device, inode) of each folder read -> its path
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders.sort()  # the first way to a folder wins, the same way every time
        info = os.stat(folder)
        first = seen.setdefault((info.st_dev, info.st_ino), folder)
        if first != folder:
            subfolders.clear()
            log.warning("skipped %s: it leads to %s, already read", folder, first)
            continue
        found += [Path(folder, f) for f in files if Path(f).suffix.lower() in AUDIO_SUFFIXES]
    return sorted(p for p in found if p.is_file())


def read_mono(path: Path, sample_rate: int) -> tuple[np.ndarray, np.float32]:
    """Mono float32 at `sample_rate` and the DC offset still to subtract from it (0 once resampled: the
    offset goes before resampling); DataError on unreadable or non-finite audio."""
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except UNREADABLE as e:
        raise DataError(f"unreadable: {e}") from None
    if audio.size == 0:
        raise DataError("no samples")
    bad = int(np.count_nonzero(~np.isfinite(audio)))
    if bad:
        raise DataError(f"{bad} NaN/Inf samples")
    mono = audio.mean(axis=1)
    dc = mono.mean()  # a DC offset would pass through the codec as a constant error
    if sr == sample_rate:
        return np.ascontiguousarray(mono), dc
    import torch  # here, not at the top: a decoding process imports torch only if it resamples
    import torchaudio.functional as AF

    mono = AF.resample(torch.from_numpy(mono - dc), sr, sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32), np.float32(0)


def decode(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 at `sample_rate`, DC offset removed; raises DataError on unusable audio."""
    mono, dc = read_mono(path, sample_rate)
    return mono - dc


def to_int16(mono: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """int16 samples and the scale that maps them back (full scale, or the peak where it exceeds 1)."""
    peak = float(np.abs(mono).max())
    scale = np.float32(1 / FULL_SCALE if peak <= 1 else peak / (FULL_SCALE - 1))
    return np.clip(np.rint(mono / scale), -FULL_SCALE, FULL_SCALE - 1).astype(np.int16), scale


def planned_length(path: Path, sample_rate: int) -> int | str:
    """Samples the file will have at `sample_rate` (as torchaudio resamples), or why it is unreadable."""
    try:
        info = sf.info(str(path))
    except UNREADABLE as e:
        return f"unreadable: {e}"
    return -(-info.frames * sample_rate // info.samplerate)


def decode_into(job: tuple[str, int, int], out: str, sample_rate: int) -> tuple[int, float, float] | str:
    """Decode job's file (path, offset, slot) into `out` at offset, at most slot samples: (samples written,
    scale, DC offset), or why the file cannot be used. What a decoding process runs."""
    path, offset, slot = job
    try:
        mono, dc = read_mono(Path(path), sample_rate)
    except DataError as e:
        return str(e)
    samples, scale = to_int16(mono[:slot])
    with open(out, "r+b") as f:
        os.pwrite(f.fileno(), samples.tobytes(), offset * samples.itemsize)
    return len(samples), float(scale), float(dc)


@contextlib.contextmanager
def mapper(processes: int) -> Iterator[Callable]:
    """A map(function, items) that runs in `processes` processes (1: this one), results in order."""
    if processes == 1:
        yield map
        return
    # forked from a fresh server that imported only this module (numpy, soundfile: it starts in a fraction
    # of a second), with no copy of the caller's threads or main module (torch, Ray, a test session); one
    # torch thread each where they resample, as DataLoader workers have
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(processes, context, initializer=one_torch_thread) as pool:
        # chunks small enough that the last ones keep every process busy
        yield lambda f, items: pool.map(f, items, chunksize=max(1, min(16, len(items) // (8 * processes))))


def one_torch_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"  # read when torch is first imported


def decode_processes(size: int) -> int:
    """One process per CPU this one may use, each with at least BYTES_PER_PROCESS of the files' `size`."""
    return max(1, min(len(os.sched_getaffinity(0)), size // BYTES_PER_PROCESS))


@dataclass
class Corpus:
    """The cached corpus: where each usable file's audio lies in the cache's int16 file, and why the
    others were skipped. File i's audio is its int16 samples * scales[i] - dcs[i], as float32."""

    folder: Path
    sample_rate: int
    names: list[str]  # paths relative to the corpus root
    offsets: np.ndarray  # (F,) int64, in samples
    lengths: np.ndarray  # (F,) int64
    scales: np.ndarray  # (F,) float32
    dcs: np.ndarray  # (F,) float32
    skipped: dict[str, str]  # name -> why it was not used

    @property
    def path(self) -> Path:
        return self.folder / AUDIO

    def audio(self, i: int) -> np.ndarray:
        """File i's float32 samples, read from the cache (not kept)."""
        samples = np.fromfile(self.path, np.int16, self.lengths[i], offset=2 * int(self.offsets[i]))
        return samples.astype(np.float32) * self.scales[i] - self.dcs[i]

    @classmethod
    def read(cls, folder: Path) -> Corpus:
        meta = json.loads((folder / META).read_text())
        files = meta["files"]
        column = {k: np.array([f[k] for f in files], dtype) for k, dtype in COLUMNS.items()}
        return cls(folder, meta["sample_rate"], [f["name"] for f in files], **column, skipped=meta["skipped"])


COLUMNS = {"offsets": np.int64, "lengths": np.int64, "scales": np.float32, "dcs": np.float32}


def load_corpus(root: Path, sample_rate: int, cache_dir: Path | None = None, processes: int = 0) -> Corpus:
    """Decode every audio file under root into the cache (processes: 0 = decode_processes()), or read
    the cache made by an earlier call."""
    root = Path(root).resolve()
    files = find_audio(root)
    if not files:
        raise DataError(
            f"no audio files under {str(root)!r} (looked for {', '.join(sorted(AUDIO_SUFFIXES))})"
        )
    names = [str(p.relative_to(root)) for p in files]
    stats = [(n, s.st_size, s.st_mtime_ns) for n, s in zip(names, map(os.stat, files), strict=True)]
    key = hashlib.sha256(json.dumps([CACHE_VERSION, sample_rate, stats]).encode()).hexdigest()[:20]
    folder = Path(cache_dir or default_cache_dir()).absolute() / f"corpus-{key}"  # trials run elsewhere
    if (folder / META).exists():
        return Corpus.read(folder)

    processes, started = processes or decode_processes(sum(size for _, size, _ in stats)), time.perf_counter()
    with mapper(processes) as run:
        # where each file goes in the int16 file, from its header; the disk must hold all of it
        planned = list(run(functools.partial(planned_length, sample_rate=sample_rate), files))
        skipped = {n: why for n, why in zip(names, planned, strict=True) if isinstance(why, str)}
        slots = [(n, str(p), s) for n, p, s in zip(names, files, planned, strict=True) if n not in skipped]
        offsets = np.cumsum([0] + [s for *_, s in slots])
        free = shutil.disk_usage(nearest_existing(folder)).free  # nothing is made before the check
        need = int(offsets[-1]) * 2
        if need > free:
            raise DataError(
                f"the decoded corpus needs {need / 2**20:.1f} MiB in the cache {str(folder)!r}, which has "
                f"{free / 2**20:.1f} MiB free; pass --cache-dir on a disk with room"
            )
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [(path, int(offset), slot) for (_, path, slot), offset in zip(slots, offsets, strict=False)]
        files_meta = []

        def decode_to(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                f.truncate(need)  # sparse until written
            work = functools.partial(decode_into, out=str(tmp), sample_rate=sample_rate)
            procs = f"{processes} process" + "es" * (processes > 1)
            shown = "{l_bar}{bar}| {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}]"
            seconds = float(offsets[-1]) / sample_rate
            with tqdm(total=seconds, desc=f"decoding, {procs}", bar_format=shown, leave=False) as bar:
                for (name, _, slot), (_, offset, _), done in zip(slots, jobs, run(work, jobs), strict=True):
                    bar.update(slot / sample_rate)
                    if isinstance(done, str):
                        skipped[name] = done
                    else:
                        files_meta.append(dict(zip(("name", *COLUMNS), (name, offset, *done), strict=True)))

        atomic_write(folder / AUDIO, decode_to)
    meta = {"sample_rate": sample_rate, "files": files_meta, "skipped": skipped}
    atomic_write(folder / META, lambda tmp: tmp.write_text(json.dumps(meta)))
    hours = sum(f["lengths"] for f in files_meta) / sample_rate / 3600
    print(
        f"decoded {len(files_meta)} files ({hours:.2f} h of audio) in {time.perf_counter() - started:.1f} s "
        f"with {processes} process{'es' * (processes > 1)} into {folder} ({need / 2**20:.1f} MiB)"
    )
    return Corpus.read(folder)
