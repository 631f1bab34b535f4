"""The cached corpus -> fixed-length train/validation segments, split by file and read per batch.

Segments are positions in the cache's int16 file, which every process memory-maps: trials on one machine
share its pages (the operating system's page cache) instead of each holding a copy, and a corpus larger
than memory is read from disk as batches need it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tune_codec.config import Config
from tune_codec.data.corpus import Corpus, load_corpus
from tune_codec.errors import DataError

log = logging.getLogger(__name__)

DEMO_CORPUS = Path(__file__).parent.parent / "demo_corpus"  # package data of tune_codec


@functools.cache
def mapped(path: str) -> np.ndarray:
    """The cache's int16 file, memory-mapped read-only once per process."""
    return np.asarray(np.memmap(path, np.int16, "r"))


@dataclass
class Segments:
    """Segments of `length` samples of the cache file: segment i is its int16 samples from starts[i],
    times scales[i], minus dcs[i], as float32. Small to send: the audio stays in the file."""

    path: Path
    starts: np.ndarray  # (N,) int64
    scales: np.ndarray  # (N,) float32
    dcs: np.ndarray  # (N,) float32
    length: int
    lo: np.ndarray | None = None  # (N,) int64: the first and last start in the segment's file, the room a
    hi: np.ndarray | None = None  # random crop moves it in; None: segments stay where they are

    def __len__(self) -> int:
        return len(self.starts)

    def read(self, index: np.ndarray | slice = slice(None), shift: np.ndarray | None = None) -> np.ndarray:
        """The segments at index, each moved `shift` samples within its file if given, (K, length) float32."""
        starts = self.starts[index]
        if shift is not None and self.lo is not None:
            starts = np.clip(starts + shift, self.lo[index], self.hi[index])
        raw = mapped(str(self.path))[starts[:, None] + np.arange(self.length)]
        return raw.astype(np.float32) * self.scales[index, None] - self.dcs[index, None]


@dataclass
class CodecData:
    """Fixed-length segments split by file."""

    train: Segments
    valid: Segments
    sample_rate: int
    train_files: list[str]
    valid_files: list[str]

    def summary(self) -> str:
        sec = self.train.length / self.sample_rate
        return (
            f"{len(self.train)} train segments from {len(self.train_files)} files, "
            f"{len(self.valid)} validation segments from {len(self.valid_files)} files, "
            f"{sec:g} s each at {self.sample_rate} Hz"
        )


def loud_segments(audio: np.ndarray, length: int, silence_db: float) -> np.ndarray:
    """Indices of the non-overlapping segments of (T,) audio whose RMS is above silence_db."""
    segs = audio[: len(audio) // length * length].reshape(-1, length)
    rms_db = 10 * np.log10(np.mean(segs.astype(np.float64) ** 2, axis=1) + 1e-20)
    return np.flatnonzero(rms_db > silence_db)


def is_valid_file(name: str, valid_fraction: float) -> bool:
    """Deterministic split by file name: the same file is always on the same side."""
    return _unit_hash(name) < valid_fraction


def _unit_hash(name: str) -> float:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) / 16**40


def split(corpus: Corpus, config: Config) -> CodecData:
    """Segment every file and split by file into train and validation."""
    length = config.segment_samples
    kept = {}  # name -> (file index, its loud segments' indices)
    short = []
    for i, name in enumerate(corpus.names):
        if corpus.lengths[i] < length:
            short.append(name)
        else:
            kept[name] = (i, loud_segments(corpus.audio(i), length, config.silence_db))
    silent = [n for n, (_, k) in kept.items() if len(k) == 0]
    usable = sorted((n for n, (_, k) in kept.items() if len(k)), key=_unit_hash)
    for name, why in corpus.skipped.items():
        log.warning("skipped %s: %s", name, why)
    if short:
        log.warning(
            "%d file(s) shorter than one segment (%g s) skipped: %s",
            len(short),
            length / config.sample_rate,
            ", ".join(short[:5]) + (" ..." if len(short) > 5 else ""),
        )
    if silent:
        log.warning("%d file(s) entirely below %g dBFS skipped", len(silent), config.silence_db)
    if len(usable) < 2:
        raise DataError(
            f"{len(usable)} usable audio file(s) (of {len(corpus.names) + len(corpus.skipped)}); "
            f"need at least 2 with a non-silent segment of {length / config.sample_rate:g} s "
            "to split train and validation by file"
        )
    valid = [n for n in usable if is_valid_file(n, config.valid_fraction)] or usable[:1]
    if len(valid) == len(usable):
        valid = valid[:-1]
    if config.valid_max_seconds:  # whole files in their fixed (hashed) order; the rest train
        cap, total = config.valid_max_seconds * config.sample_rate, 0
        for i, name in enumerate(valid):
            total += len(kept[name][1]) * length
            if total >= cap:
                valid = valid[: i + 1]
                break
    valid_set = set(valid)
    train = [n for n in usable if n not in valid_set]

    def segments(names: list[str]) -> Segments:
        files = [kept[n] for n in names]
        starts = [corpus.offsets[i] + k * length for i, k in files]
        each = [len(k) for _, k in files]
        index = [i for i, _ in files]
        first = corpus.offsets[index].astype(np.int64)
        return Segments(
            corpus.path,
            np.concatenate(starts).astype(np.int64),
            np.repeat(corpus.scales[index], each),
            np.repeat(corpus.dcs[index], each),
            length,
            np.repeat(first, each),
            np.repeat(first + np.asarray(corpus.lengths)[index] - length, each),
        )

    return CodecData(segments(train), segments(valid), config.sample_rate, train, valid)


def load_data(data_dir: Path | None, config: Config, cache_dir: Path | None = None) -> CodecData:
    """The one entry point: decode (or read the cache), segment and split."""
    corpus = load_corpus(Path(data_dir) if data_dir else DEMO_CORPUS, config.sample_rate, cache_dir)
    return split(corpus, config)
