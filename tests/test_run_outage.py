"""A single training run survives what a search survives: its MLflow server killed mid-run, back before
the end or only after it. A real `mlflow server`, real training."""

import pytest
from mlflow.tracking import MlflowClient

import train_codec
from tune_codec import tracking
from tune_codec.training import train

from .test_cli import tiny_flags

pytestmark = pytest.mark.slow  # real processes killed, servers stopped, searches resumed

EPOCHS = [1, 2, 3, 4, 5, 6]


def outage(monkeypatch, server, stop_after: int, start_after: int | None = None) -> None:
    """The server stopped right after epoch `stop_after`'s checkpoint (before its report), and started
    again after epoch `start_after`'s: at chosen points of the run, whatever the machine's speed."""
    end_epoch = train.end_epoch

    def end_epoch_with_outage(state, *args):
        metrics = end_epoch(state, *args)
        if state.epoch == stop_after:
            server.stop()
        if state.epoch == start_after:
            server.start()
        return metrics

    monkeypatch.setattr(train, "end_epoch", end_epoch_with_outage)


def assert_logged_once_and_finished(server):
    client = MlflowClient(server.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tune-codec").experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/snr_db")] == EPOCHS
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/best.pt"]


def test_a_run_whose_mlflow_server_dies_and_comes_back_keeps_training_and_loses_nothing(
    audio_dir, server, tmp_path, capsys, monkeypatch
):
    ckpt = tmp_path / "ckpt"
    flags = [
        "--data_dir",
        str(audio_dir),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--checkpoint_dir",
        str(ckpt),
    ]
    outage(monkeypatch, server, stop_after=2, start_after=4)  # epochs 2 and 3 reported to no server
    assert train_codec.main([*flags, "--tracking_uri", server.uri, *tiny_flags(num_epochs=6)]) == 0
    err = capsys.readouterr().err
    assert err.count("unreachable (") == 1 and "training goes on" in err  # said once
    assert "queued updates sent" in err
    assert not tracking.read_state(ckpt / train_codec.RUN_FILE)["pending"]
    assert_logged_once_and_finished(server)


def test_a_run_whose_mlflow_server_stays_down_keeps_its_updates_for_resume(
    audio_dir, server, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(tracking, "FINAL_WAIT_S", 1.0)
    ckpt = tmp_path / "ckpt"
    flags = [
        "--data_dir", str(audio_dir), "--cache_dir", str(tmp_path / "cache"), "--checkpoint_dir", str(ckpt),
        "--tracking_uri", server.uri, *tiny_flags(num_epochs=6),
    ]  # fmt: skip
    outage(monkeypatch, server, stop_after=2)
    assert train_codec.main(flags) == 1  # trained to the end, but not all of it is in MLflow
    out, err = capsys.readouterr()
    assert "done: best SNR" in out
    run_file = ckpt / train_codec.RUN_FILE
    assert f"kept in {run_file}" in err and f"--resume --checkpoint_dir {ckpt}" in err
    assert tracking.read_state(run_file)["pending"]

    monkeypatch.undo()
    server.start()
    assert train_codec.main([*flags, "--resume"]) == 0
    assert "queued updates sent" in capsys.readouterr().err
    assert not tracking.read_state(run_file)["pending"]
    assert_logged_once_and_finished(server)
