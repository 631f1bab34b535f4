import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

import train_codec
from tune_codec.config import to_flags
from tune_codec.tracking import resolve_tracking_uri

from .conftest import TINY


def tiny_flags(**over):
    from tune_codec.config import make_config

    return to_flags(make_config({**TINY, "num_epochs": 2, **over}))


@pytest.fixture
def cli_env(audio_dir, tmp_path):
    db = tmp_path / "mlflow.db"
    base = ["--data_dir", str(audio_dir), "--cache_dir", str(tmp_path / "cache"), "--tracking_uri", str(db)]
    return base, MlflowClient(resolve_tracking_uri(str(db)))


def runs(client, experiment="tune-codec"):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_a_run_is_logged_to_mlflow_with_params_metrics_and_artifacts(cli_env, tmp_path, capsys):
    base, client = cli_env
    ckpt = tmp_path / "ckpt"
    assert train_codec.main([*base, "--checkpoint_dir", str(ckpt), *tiny_flags()]) == 0
    out = capsys.readouterr().out
    assert "range ratio" in out and "SNR" in out and "kbps" in out
    (run,) = runs(client)
    assert run.info.status == "FINISHED"
    assert run.data.params["learning_rate"] == "0.003" and run.data.params["bitrate_kbps"] == "16"
    history = client.get_metric_history(run.info.run_id, "val/snr_db")
    assert [m.step for m in history] == [1, 2]
    names = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert "samples/waveform.png" in names and "samples/output_0.wav" in names
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/best.pt"]


def test_resume_continues_the_same_mlflow_run(cli_env, tmp_path):
    base, client = cli_env
    ckpt = tmp_path / "ckpt"
    assert train_codec.main([*base, "--checkpoint_dir", str(ckpt), *tiny_flags(num_epochs=1)]) == 0
    run_id = json.loads((ckpt / train_codec.RUN_FILE).read_text())["runs"][train_codec.RUN]
    assert train_codec.main([*base, "--checkpoint_dir", str(ckpt), "--resume", "--num_epochs", "3"]) == 0
    (run,) = runs(client)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "val/snr_db")] == [1, 2, 3]


def test_an_existing_run_is_not_overwritten(cli_env, tmp_path, capsys):
    base, _ = cli_env
    ckpt = tmp_path / "ckpt"
    assert train_codec.main([*base, "--checkpoint_dir", str(ckpt), *tiny_flags(num_epochs=1)]) == 0
    before = (ckpt / "last.pt").read_bytes()
    assert train_codec.main([*base, "--checkpoint_dir", str(ckpt), *tiny_flags(learning_rate=1e-4)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (
        train_codec.main([*base, "--checkpoint_dir", str(ckpt), "--resume", "--learning_rate", "1e-4"]) == 2
    )
    assert "learning_rate=0.0001 (saved 0.003)" in capsys.readouterr().err
    assert (ckpt / "last.pt").read_bytes() == before


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch_size", "0"], "batch_size=0 must be >= 1"),
        (["--num_epochs", "-1"], "num_epochs=-1 must be >= 1"),
        (["--learning_rate", "0"], "learning_rate=0.0 must be > 0"),
        (["--learning_rate", "fast"], "learning_rate='fast' is not a valid float"),
        (["--data_dir", "/nonexistent/audio"], "'/nonexistent/audio' does not exist"),
        (["--resume"], "--resume: no last.pt"),
        (["--config", "nope"], "config 'nope' is neither a named config (cpu-demo, cpu-freq-6kbps"),
        (["--config", "cpu-demo", "--schedule", "s.yaml"], "--config 'cpu-demo': --schedule 's.yaml' holds"),
        (["--config", "cpu-demo", "--adv_loss", "gan"], "adv_loss='gan' must be one of hinge, lsq"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(flags, message, cli_env, tmp_path, capsys):
    base, client = cli_env
    ckpt = tmp_path / "ckpt"
    assert train_codec.main([*base, "--checkpoint_dir", str(ckpt), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not ckpt.exists() and runs(client) == []


def test_help_documents_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit):
        train_codec.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--rms_weight" in out and "(default: 10.0)" in out and "(default: 2,4,8)" in out
    assert "--data_dir" in out and "bundled demo corpus" in out


KILLED_AFTER_EPOCH_3 = """
import os, signal, sys
import train_codec
from tune_codec.training import train

end_epoch = train.end_epoch


def end_epoch_then_die(state, *args):
    metrics = end_epoch(state, *args)
    if state.epoch == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return metrics


train.end_epoch = end_epoch_then_die
sys.exit(train_codec.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_to_the_same_weights(cli_env, tmp_path):
    base, client = cli_env
    flags = [*base, *tiny_flags(num_epochs=8)]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train_codec.main([*flags, "--checkpoint_dir", str(straight)]) == 0

    # killed at a chosen point, right after epoch 3's checkpoint: the process kills itself there
    argv = [sys.executable, "-c", KILLED_AFTER_EPOCH_3, *flags, "--checkpoint_dir", str(killed)]
    proc = subprocess.Popen(argv, cwd=Path(train_codec.__file__).parent, stdout=subprocess.DEVNULL)
    assert proc.wait() == -9
    assert json.loads((killed / "metrics.json").read_text())["epoch"] == 3
    # what a kill during a save leaves: a half-written temporary beside the last complete checkpoint
    (killed / f".last.pt.{proc.pid}.tmp.pt").write_bytes((killed / "last.pt").read_bytes()[:1000])

    assert train_codec.main([*base, "--checkpoint_dir", str(killed), "--resume"]) == 0
    a = torch.load(straight / "last.pt", weights_only=False)
    b = torch.load(killed / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 8
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    (run_a,) = [r for r in runs(client) if r.info.run_name == "straight"]
    (run_b,) = [r for r in runs(client) if r.info.run_name == "killed"]
    assert run_b.info.status == "FINISHED"
    assert run_b.data.metrics["val/snr_db"] == run_a.data.metrics["val/snr_db"]


def test_a_corrupt_checkpoint_is_refused_by_name(cli_env, tmp_path, capsys):
    base, _ = cli_env
    ckpt = tmp_path / "ckpt"
    assert train_codec.main([*base, "--checkpoint_dir", str(ckpt), *tiny_flags(num_epochs=1)]) == 0
    (ckpt / "last.pt").write_bytes((ckpt / "last.pt").read_bytes()[:1000])  # a disk that lost its tail
    capsys.readouterr()
    assert train_codec.main([*base, "--checkpoint_dir", str(ckpt), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"'{ckpt / 'last.pt'}' is incomplete or corrupt" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "files, message",
    [
        ({}, "no audio files under"),
        ({"notes.txt": b"text", "cover.png": b"\x89PNG"}, "no audio files under"),
        ({"a.wav": b"", "b.flac": b"fLaC" + bytes(50)}, "0 usable audio file(s) (of 2)"),
    ],
    ids=["empty", "no-audio", "all-broken"],
)
def test_a_corpus_with_nothing_usable_is_one_line_exit_2(files, message, cli_env, tmp_path, capsys):
    base, client = cli_env
    corpus = tmp_path / "unusable"
    corpus.mkdir()
    for name, content in files.items():
        (corpus / name).write_bytes(content)
    ckpt = tmp_path / "ckpt"
    assert train_codec.main([*base, "--data_dir", str(corpus), "--checkpoint_dir", str(ckpt)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert message in err[-1] and err[-1].startswith("train_codec.py: error: ")
    assert not ckpt.exists() and runs(client) == []


def test_a_named_config_is_the_base_that_flags_change(cli_env, tmp_path, capsys):
    base, client = cli_env
    ckpt = tmp_path / "ckpt"
    flags = [*base, "--checkpoint_dir", str(ckpt), "--config", "speech16k-8kbps", *tiny_flags(num_epochs=1)]
    # the tiny codec's fields given as flags, the rest of the named config kept: its losses and dropout
    assert train_codec.main([*flags, "--segment_seconds", "0.032", "--disc_channels", "2"]) == 0
    (run,) = runs(client)
    params = run.data.params
    assert (
        params["config"] == "speech16k-8kbps" and params["channels"] == "4" and params["balancer"] == "True"
    )
    assert params["adam_beta1"] == "0.5" and {"disc/mpd", "loss/adv/gen"} <= set(run.data.metrics)
