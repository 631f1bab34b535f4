"""tune-codec COMMAND: one console script whose commands are the python -m entry points, unchanged."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tune_codec.main import COMMANDS, main

from .conftest import ENV
from .test_cli import tiny_flags

SCRIPT = Path(sys.executable).parent / "tune-codec"  # installed by pip install (-e) .


def help_of(capsys, call) -> str:
    with pytest.raises(SystemExit) as done:
        call()
    assert done.value.code == 0
    return capsys.readouterr().out


def test_help_names_every_command_and_its_python_m_form(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, _, _, same) in COMMANDS.items():
        assert f"  {name} " in out and f"({same})" in out
    assert main([]) == 2 and "usage: tune-codec COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["train", "search", "report", "evaluate", "encode", "decode"])
def test_each_command_is_its_entry_point(name, capsys):
    module, first, _, _ = COMMANDS[name]
    ours = help_of(capsys, lambda: main([name, "--help"]))
    theirs = help_of(capsys, lambda: importlib.import_module(module).main([*first, "--help"]))
    assert ours == theirs and "usage:" in ours


def test_an_unknown_command_is_one_line_naming_the_allowed_ones(capsys):
    assert main(["serch", "--space", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert err == "tune-codec: error: unknown command 'serch' (allowed: " + ", ".join(COMMANDS) + ")\n"


def test_doctor_is_the_doctors_entry_point(capsys):
    doctor = pytest.importorskip("tune_codec.doctor.cli", reason="the doctor has not landed in this tree")
    assert help_of(capsys, lambda: main(["doctor", "--help"])) == help_of(
        capsys, lambda: doctor.main(["--help"])
    )


@pytest.mark.slow  # trains a codec: 33-51 s on the loaded 2-core machine
def test_train_encode_decode_through_the_command(audio_dir, tmp_path):
    checkpoints = tmp_path / "ckpt"
    train = ["--data_dir", str(audio_dir), "--cache_dir", str(tmp_path / "cache"), "--checkpoint_dir"]
    train += [
        str(checkpoints),
        "--tracking_uri",
        str(tmp_path / "mlflow.db"),
        *tiny_flags(max_steps_per_epoch=2),
    ]
    assert main(["train", *train]) == 0
    best, audio = checkpoints / "best.pt", audio_dir / "spk1" / "a0.wav"
    assert main(["encode", str(best), str(audio), str(tmp_path / "a0.codes")]) == 0
    assert main(["decode", str(best), str(tmp_path / "a0.codes"), str(tmp_path / "a0.wav")]) == 0
    decoded, rate = sf.read(tmp_path / "a0.wav")
    assert rate == 8000 and abs(len(decoded) - sf.info(audio).frames) < 8  # padded to whole frames at most


@pytest.mark.slow  # two processes importing Ray and torch
@pytest.mark.skipif(not SCRIPT.exists(), reason="tune-codec is not installed in this environment")
def test_the_installed_script_prints_what_its_python_m_form_prints():
    def out(*argv):
        done = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    search = out(sys.executable, "-m", "tune_codec.run", "--help")
    assert out(SCRIPT, "search", "--help") == search
