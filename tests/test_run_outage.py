"""A single training run survives what a search survives: its MLflow server killed mid-run, back before
the end or only after it. A real `mlflow server`, real training."""

import json
import threading

from mlflow.tracking import MlflowClient

import train_codec
from tune_codec import tracking

from .conftest import wait_for
from .test_cli import tiny_flags

EPOCHS = [1, 2, 3, 4, 5, 6]


def reached(checkpoint_dir, epoch: int) -> bool:
    try:
        return json.loads((checkpoint_dir / "metrics.json").read_text())["epoch"] >= epoch
    except (OSError, ValueError):
        return False


def kill_at_epoch_2(server, checkpoint_dir, restart: bool) -> threading.Thread:
    def outage():
        wait_for(lambda: reached(checkpoint_dir, 2), 240, "epoch 2")
        server.stop()
        if restart:
            server.start()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    return thread


def assert_logged_once_and_finished(server):
    client = MlflowClient(server.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tune-codec").experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/snr_db")] == EPOCHS
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/best.pt"]


def test_a_run_whose_mlflow_server_dies_and_comes_back_keeps_training_and_loses_nothing(
    audio_dir, server, tmp_path, capsys
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
    thread = kill_at_epoch_2(server, ckpt, restart=True)
    assert train_codec.main([*flags, "--tracking_uri", server.uri, *tiny_flags(num_epochs=6)]) == 0
    thread.join(timeout=120)
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
    kill_at_epoch_2(server, ckpt, restart=False).join(timeout=0)
    assert train_codec.main(flags) == 1  # trained to the end, but not all of it is in MLflow
    out, err = capsys.readouterr()
    assert "done: best SNR" in out
    run_file = ckpt / train_codec.RUN_FILE
    assert f"kept in {run_file}" in err and f"--resume --checkpoint_dir {ckpt}" in err
    assert tracking.read_state(run_file)["pending"]

    server.start()
    assert train_codec.main([*flags, "--resume"]) == 0
    assert "queued updates sent" in capsys.readouterr().err
    assert not tracking.read_state(run_file)["pending"]
    assert_logged_once_and_finished(server)
