"""Audio corpus -> fixed-length train/validation segments, decoded once and cached."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from tqdm import tqdm

from tune_codec.config import Config, UsageError
from tune_codec.files import atomic_write

log = logging.getLogger(__name__)

DEMO_CORPUS = Path(__file__).parent / "demo_corpus"
CACHE_VERSION = 1  # bump when the cached arrays change meaning
AUDIO_SUFFIXES = {f".{f.lower()}" for f in sf.available_formats()} | {".aif", ".oga", ".opus"}


class DataError(UsageError):
    """The audio cannot be used; the message says which file or setting and why."""


@dataclass
class Corpus:
    """Decoded, resampled mono audio of every usable file, keyed by path relative to the root."""

    sample_rate: int
    audio: dict[str, np.ndarray]  # name -> (T,) float32
    skipped: dict[str, str]  # name -> why it was not used


@dataclass
class CodecData:
    """Fixed-length segments split by file; numpy so Ray's object store shares them zero-copy."""

    train: np.ndarray  # (N, L) float32
    valid: np.ndarray  # (M, L) float32
    sample_rate: int
    train_files: list[str]
    valid_files: list[str]

    def summary(self) -> str:
        sec = self.train.shape[1] / self.sample_rate
        return (
            f"{len(self.train)} train segments from {len(self.train_files)} files, "
            f"{len(self.valid)} validation segments from {len(self.valid_files)} files, "
            f"{sec:g} s each at {self.sample_rate} Hz"
        )


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


def decode(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 at `sample_rate`; raises DataError on unreadable or non-finite audio."""
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (RuntimeError, sf.LibsndfileError, EOFError) as e:
        raise DataError(f"unreadable: {e}") from None
    if audio.size == 0:
        raise DataError("no samples")
    bad = int(np.count_nonzero(~np.isfinite(audio)))
    if bad:
        raise DataError(f"{bad} NaN/Inf samples")
    mono = audio.mean(axis=1)
    mono -= mono.mean()  # DC offset would pass through the codec as a constant error
    if sr != sample_rate:
        mono = AF.resample(torch.from_numpy(mono), sr, sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def load_corpus(root: Path, sample_rate: int, cache_dir: Path | None = None) -> Corpus:
    """Decode every audio file under root, or read the cache made by an earlier call."""
    root = Path(root).resolve()
    files = find_audio(root)
    if not files:
        raise DataError(
            f"no audio files under {str(root)!r} (looked for {', '.join(sorted(AUDIO_SUFFIXES))})"
        )
    names = [str(p.relative_to(root)) for p in files]
    stats = [(n, p.stat().st_size, p.stat().st_mtime_ns) for n, p in zip(names, files, strict=False)]
    key = hashlib.sha256(json.dumps([CACHE_VERSION, sample_rate, stats]).encode()).hexdigest()[:20]
    cache = Path(cache_dir or default_cache_dir()) / f"corpus-{key}.npz"
    if cache.exists():
        with np.load(cache) as z:
            meta = json.loads(str(z["meta"]))
            audio = {n: z[f"a{i}"] for i, n in enumerate(meta["names"])}
        return Corpus(sample_rate, audio, meta["skipped"])

    audio, skipped = {}, {}
    for name, path in zip(names, tqdm(files, desc="decoding audio", unit="file", leave=False), strict=False):
        try:
            audio[name] = decode(path, sample_rate)
        except DataError as e:
            skipped[name] = str(e)
    cache.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"names": list(audio), "skipped": skipped})
    arrays = {f"a{i}": a for i, a in enumerate(audio.values())}
    atomic_write(cache, lambda tmp: np.savez(tmp, meta=meta, **arrays))  # loaders never see half a cache
    return Corpus(sample_rate, audio, skipped)


def segment(audio: np.ndarray, length: int, silence_db: float) -> np.ndarray:
    """(T,) -> (K, length) non-overlapping segments, silent ones dropped."""
    segs = audio[: len(audio) // length * length].reshape(-1, length)
    rms_db = 10 * np.log10(np.mean(segs.astype(np.float64) ** 2, axis=1) + 1e-20)
    return segs[rms_db > silence_db]


def is_valid_file(name: str, valid_fraction: float) -> bool:
    """Deterministic split by file name: the same file is always on the same side."""
    return _unit_hash(name) < valid_fraction


def _unit_hash(name: str) -> float:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) / 16**40


def split(corpus: Corpus, config: Config) -> CodecData:
    """Segment every file and split by file into train and validation."""
    length = config.segment_samples
    segs = {n: segment(a, length, config.silence_db) for n, a in corpus.audio.items()}
    short = [n for n, a in corpus.audio.items() if len(a) < length]
    silent = [n for n, s in segs.items() if len(s) == 0 and n not in short]
    usable = sorted((n for n, s in segs.items() if len(s)), key=_unit_hash)
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
            f"{len(usable)} usable audio file(s) (of {len(corpus.audio) + len(corpus.skipped)}); "
            f"need at least 2 with a non-silent segment of {length / config.sample_rate:g} s "
            "to split train and validation by file"
        )
    valid = [n for n in usable if is_valid_file(n, config.valid_fraction)] or usable[:1]
    if len(valid) == len(usable):
        valid = valid[:-1]
    if config.valid_max_seconds:  # whole files in their fixed (hashed) order; the rest train
        cap, total = config.valid_max_seconds * config.sample_rate, 0
        for i, name in enumerate(valid):
            total += segs[name].size
            if total >= cap:
                valid = valid[: i + 1]
                break
    train = [n for n in usable if n not in valid]
    return CodecData(
        train=np.concatenate([segs[n] for n in train]),
        valid=np.concatenate([segs[n] for n in valid]),
        sample_rate=config.sample_rate,
        train_files=train,
        valid_files=valid,
    )


def load_data(data_dir: Path | None, config: Config, cache_dir: Path | None = None) -> CodecData:
    """The one entry point: decode (or read the cache), segment and split."""
    corpus = load_corpus(Path(data_dir) if data_dir else DEMO_CORPUS, config.sample_rate, cache_dir)
    return split(corpus, config)
