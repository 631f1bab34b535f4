"""Tiny real data and configs shared by the tests."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import yaml
from mlflow.tracking import MlflowClient

from tune_codec.config import make_config
from tune_codec.data.corpus import to_int16
from tune_codec.data.segments import CodecData, Segments
from tune_codec.tracking import resolve_tracking_uri

SMOKE = Path(__file__).parent.parent / "search_spaces" / "smoke.yaml"
# for subprocesses; Ray's token authentication as users have it (RAY_AUTH_MODE unset: on for a new local Ray)
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

# A codec small enough to train in a second on a CPU: 8 kHz, hop 4, 64-sample... segments of 256 samples
TINY = dict(
    sample_rate=8000,
    segment_seconds=0.032,
    channels=4,
    strides=(2, 2),
    latent_dim=8,
    n_codebooks=2,
    codebook_size=16,
    kmeans_iters=2,
    batch_size=8,
    num_epochs=3,
    learning_rate=3e-3,
)


@pytest.fixture
def tiny_config():
    return make_config(TINY)


def tones(n: int, length: int, sample_rate: int, seed: int) -> np.ndarray:
    """(n, length) float32 sums of two random tones at speech-like levels."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / sample_rate
    f = rng.uniform(100, 1200, (n, 2, 1))
    a = rng.uniform(0.05, 0.4, (n, 2, 1))
    return (a * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3, (n, 2, 1)))).sum(1).astype(np.float32)


def as_segments(x: np.ndarray, path: Path) -> Segments:
    """(n, length) float32 -> the same audio (to 16 bits) as segments of a cache file written at path."""
    samples, scale = to_int16(x.ravel())
    samples.tofile(path)
    n, length = x.shape
    return Segments(path, np.arange(n) * length, np.full(n, scale), np.zeros(n, np.float32), length)


@pytest.fixture
def tiny_data(tiny_config, tmp_path_factory):
    L, folder = tiny_config.segment_samples, tmp_path_factory.mktemp("tiny-data")
    train, valid = (as_segments(tones(n, L, 8000, s), folder / f"{s}.i16") for n, s in ((64, 0), (16, 1)))
    return CodecData(train, valid, 8000, ["train.wav"], ["valid.wav"])


def speechlike(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """(T,) syllable-like tone bursts over a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))  # 4 syllables a second
    return 0.3 * envelope * np.sin(2 * np.pi * rng.uniform(120, 300) * t) + 0.01 * rng.standard_normal(n)


def write_speechlike(path, seconds: float, sample_rate: int, channels: int = 1, seed: int = 0, **kw):
    """A real audio file of syllable-like tone bursts."""
    x = speechlike(seconds, sample_rate, seed)
    data = np.stack([x * (1 - 0.1 * c) for c in range(channels)], 1) if channels > 1 else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sample_rate, **kw)
    return path


@pytest.fixture
def audio_dir(tmp_path):
    """Six files in nested folders, in three formats, two rates, mono and stereo."""
    root = tmp_path / "corpus"
    for i in range(3):
        write_speechlike(root / "spk1" / f"a{i}.wav", 1.0, 8000, seed=i)
        write_speechlike(root / "spk2" / "deep" / f"b{i}.flac", 1.0, 16000, channels=2, seed=10 + i)
    write_speechlike(root / "c0.ogg", 1.0, 8000, seed=20)
    return root


@pytest.fixture(scope="session")
def ray_local():
    """One light local Ray for the whole session (starting one takes seconds)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def search_env(audio_dir, tmp_path):
    db = tmp_path / "mlflow.db"
    flags = [
        "--data-dir", str(audio_dir),
        "--cache-dir", str(tmp_path / "cache"),
        "--storage-path", str(tmp_path / "ray_results"),
        "--tracking-uri", str(db),
    ]  # fmt: skip
    return flags, MlflowClient(resolve_tracking_uri(str(db)))


def space_file(tmp_path, name, **changes):
    """smoke.yaml with some settings replaced."""
    raw = yaml.safe_load(SMOKE.read_text())
    for key, value in changes.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) and key != "search" else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def runs_of(client, experiment="tune-codec"):
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id])
    parents = [r for r in found if r.data.tags.get("tune_codec.role") == "search"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return parents, children


@pytest.fixture(scope="session")
def smoke_search(ray_local, tmp_path_factory):
    """One finished smoke search (search_spaces/smoke.yaml, priced at $2.50 a device-hour) shared by the
    report, codec and browser tests: its folder, flags, MLflow client, parent and child runs, and output."""
    from tune_codec import run

    root = tmp_path_factory.mktemp("smoke_search")
    for i in range(3):
        write_speechlike(root / "corpus" / f"a{i}.wav", 1.0, 8000, seed=i)
        write_speechlike(root / "corpus" / f"b{i}.flac", 1.0, 16000, channels=2, seed=10 + i)
    db = root / "mlflow.db"
    flags = [
        "--space", str(SMOKE),
        "--data-dir", str(root / "corpus"),
        "--cache-dir", str(root / "cache"),
        "--storage-path", str(root / "ray_results"),
        "--tracking-uri", str(db),
        "--price-per-gpu-hour", "2.5",
    ]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run.main(flags) == 0
    client = MlflowClient(resolve_tracking_uri(str(db)))
    (parent,), children = runs_of(client)
    return SimpleNamespace(
        root=root, db=db, flags=flags, client=client, parent=parent, children=children, out=out.getvalue()
    )


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 that can be stopped and started again on the same store."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.root.mkdir(exist_ok=True)
        argv = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1",
        ]  # fmt: skip
        log = open(self.root / "server.log", "a")  # noqa: SIM115 - the server owns it
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True, env=ENV)
        wait_for(self.healthy, 90, "the MLflow server")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def server(tmp_path):
    s = MlflowServer(tmp_path / "server")
    s.start()
    yield s
    s.stop()


# Fixtures that start a real Ray, an MLflow server or a search: a test that uses one is slow, marked so
# here rather than by hand (`pytest -m "not slow"` is the fast tier)
SLOW_FIXTURES = {"ray_local", "smoke_search", "server", "ray_cluster"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
