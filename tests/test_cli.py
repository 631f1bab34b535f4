import json

import pytest
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
    run_id = json.loads((ckpt / train_codec.RUN_FILE).read_text())["run_id"]
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
