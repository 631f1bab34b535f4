"""What users install is a wheel: built from the source (pip install ., not editable) into a new virtual
environment, it brings the tune-codec command, the demo corpus, the named configs and the bundled search
spaces, and works from any folder. The dependencies are this environment's (a .pth file), so the test
takes seconds."""

import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from .conftest import ENV

SOURCE = Path(__file__).parent.parent
FILES = ("pyproject.toml", "README.md", "train_codec.py")  # with tune_codec/: what the build reads
DEMO = 140  # files in the demo corpus
TINY = [
    "--num_epochs", "1", "--max_steps_per_epoch", "1", "--sample_rate", "8000", "--segment_seconds", "0.032",
    "--channels", "4", "--strides", "2,2", "--latent_dim", "8", "--n_codebooks", "2", "--codebook_size", "16",
    "--kmeans_iters", "2", "--batch_size", "8", "--valid_max_seconds", "2", "--perceptual_segments", "0",
]  # fmt: skip


def run(*argv, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert (done.returncode == 0) == ok, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def build_wheel(tmp_path: Path) -> Path:
    """The wheel `pip install .` builds, from a copy of the sources (the build writes beside them)."""
    src = tmp_path / "src"
    shutil.copytree(SOURCE / "tune_codec", src / "tune_codec", ignore=shutil.ignore_patterns("__pycache__"))
    for name in FILES:
        shutil.copy(SOURCE / name, src / name)
    pip = [sys.executable, "-m", "pip"]
    run(*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("tune_codec-*.whl")
    return wheel


@pytest.mark.slow  # builds a wheel, makes a virtual environment, trains from the installed package
def test_a_wheel_installed_into_a_new_venv_works_from_anywhere(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert sum(n.startswith("tune_codec/demo_corpus/") and n.endswith(".flac") for n in names) == DEMO
    configs = sorted(p.stem for p in (SOURCE / "tune_codec" / "configs").glob("*.yaml"))
    assert {f"tune_codec/configs/{name}.yaml" for name in configs} <= names and "cpu-demo" in configs

    venv, elsewhere = tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python, command = venv / "bin" / "python", venv / "bin" / "tune-codec"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel, cwd=tmp_path)
    # the dependencies: this environment's site-packages after the venv's own; a path in a .pth file runs
    # none of the .pth files in it, so this environment's editable tune_codec stays out
    (installed,) = (venv / "lib").glob("python3.*/site-packages")
    (installed / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    code = "import tune_codec, train_codec; print(tune_codec.__file__); print(train_codec.__file__)"
    where = run(python, "-c", code, cwd=elsewhere).stdout.split()
    assert all(Path(p).is_relative_to(installed) for p in where), where
    assert "usage: tune-codec COMMAND" in run(command, "--help", cwd=elsewhere).stdout
    named = run(
        python, "-c", "from tune_codec.config import named_configs; print(*named_configs())", cwd=elsewhere
    )
    assert named.stdout.split() == configs  # the named configs came with the wheel
    spaces = sorted(p.stem for p in (SOURCE / "search_spaces").glob("*.yaml"))
    code = "import tune_codec.search.space as s; print(*s.bundled_spaces(), s.load_space('smoke').trials)"
    bundled = run(python, "-c", code, cwd=elsewhere).stdout.split()
    assert bundled[:-1] == spaces and "amplitude" in spaces  # the search spaces came with it, by name
    assert int(bundled[-1]) == yaml.safe_load((SOURCE / "search_spaces" / "smoke.yaml").read_text())["trials"]

    # a named config on the demo corpus (no --data_dir), both from the installed package
    flags = [
        "--config",
        "cpu-demo",
        "--checkpoint_dir",
        "ckpt",
        "--cache_dir",
        "cache",
        "--tracking_uri",
        "m.db",
    ]
    trained = run(command, "train", *flags, *TINY, cwd=elsewhere)
    files = re.search(r"segments from (\d+) files, \d+ validation segments from (\d+) files", trained.stdout)
    assert files and int(files[1]) + int(files[2]) == DEMO, trained.stdout[-2000:]
    clip = installed / "tune_codec" / "demo_corpus" / "festival_nsk_f095" / "s01.flac"
    run(command, "encode", "ckpt/best.pt", clip, "s01.codes", cwd=elsewhere)
    assert (elsewhere / "s01.codes").stat().st_size > 0
