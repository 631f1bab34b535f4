import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tune_codec import run
from tune_codec.config import make_config
from tune_codec.tracking import resolve_tracking_uri

SMOKE = Path(__file__).parent.parent / "search_spaces" / "smoke.yaml"


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
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and key != "search" else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def runs_of(client, experiment="tune-codec"):
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id])
    parents = [r for r in found if r.data.tags.get("tune_codec.role") == "search"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_smoke_search_records_a_tree_of_runs_and_the_best_config(ray_local, search_env, tmp_path, capsys):
    flags, client = search_env
    assert run.main(["--space", str(SMOKE), *flags]) == 0
    out = capsys.readouterr().out
    (parent,), children = runs_of(client)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_collapsed"] == 0
    assert len(children) == 3
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED" and child.data.tags["stop_reason"] == "completed"
        history = client.get_metric_history(child.info.run_id, "val/snr_db")
        assert sorted(m.step for m in history) == [1, 2, 3]
        assert child.data.params["bitrate_kbps"] == "16"
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")}
        assert artifacts == {"checkpoint/best.pt"}
    # the hand-fix start point was evaluated as given
    assert any(
        c.data.params["rms_weight"] == "10.0" and c.data.params["learning_rate"] == "0.003" for c in children
    )
    best_file = tmp_path / "ray_results" / "smoke" / run.BEST_FILE
    best = make_config(yaml.safe_load(best_file.read_text()))
    best_snr = max(c.data.metrics["val/best_snr_db"] for c in children)
    assert parent.data.metrics["best_snr_db"] == pytest.approx(best_snr)
    assert f"best validation SNR {best_snr:.2f} dB" in out
    assert "train it: python train_codec.py" in out and f"--rms_weight {best.rms_weight}" in out
    # the same name again is refused, and nothing is overwritten
    assert run.main(["--space", str(SMOKE), *flags]) == 2
    assert "already holds a search; pass --resume" in capsys.readouterr().err
    assert best_file.exists() and len(runs_of(client)[1]) == 3


def test_a_collapsing_space_is_stopped_and_recorded_as_collapsed(ray_local, search_env, tmp_path, capsys):
    flags, client = search_env
    # no amplitude loss and a tiny learning rate: the output stays far too quiet
    collapse = space_file(
        tmp_path,
        "collapse",
        config={"num_epochs": 6, "rms_weight": 0.0, "peak_weight": 0.0},
        stop={"grace_epochs": 1, "range_ratio": [0.5, 2.0]},
        search={"learning_rate": {"loguniform": [1e-7, 1e-6]}},
        start=[],
        trials=2,
    )
    assert run.main(["--space", str(collapse), *flags]) == 1
    assert "no trial trained without collapsing" in capsys.readouterr().out
    (parent,), children = runs_of(client)
    assert parent.data.metrics["trials_collapsed"] == 2 and parent.data.metrics["epochs_saved"] == 2 * 4
    for child in children:
        assert child.data.tags["stop_reason"].startswith("range collapse: ratio")
        assert child.data.metrics["search/score"] == -30.0  # what Optuna was told
        assert max(m.step for m in client.get_metric_history(child.info.run_id, "val/snr_db")) == 2


def test_a_search_interrupted_by_ctrl_c_resumes_with_the_same_runs(ray_local, search_env, tmp_path):
    flags, client = search_env
    slow = space_file(tmp_path, "slow", config={"num_epochs": 6, "max_steps_per_epoch": 40}, trials=3)
    folder = tmp_path / "ray_results" / "slow"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    driver = subprocess.Popen([sys.executable, "-m", "tune_codec.run", "--space", str(slow), *flags], env=env)
    deadline = time.time() + 240
    while time.time() < deadline:  # interrupt once a trial has reported an epoch
        state = run.state_path(folder)
        if state.exists() and json.loads(state.read_text())["logged"]:
            exp = client.get_experiment_by_name("tune-codec")
            runs = client.search_runs([exp.experiment_id], "metrics.epoch >= 1")
            if runs:
                break
        time.sleep(0.5)
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=120) == 130
    parent_before, children_before = runs_of(client)
    assert all(r.info.status != "RUNNING" for r in parent_before + children_before)
    done_before = json.loads(run.state_path(folder).read_text())["done"]
    assert len(done_before) < 3

    assert run.main(["--space", str(slow), *flags, "--resume"]) == 0
    (parent,), children = runs_of(client)
    assert parent.info.run_id == parent_before[0].info.run_id and parent.info.status == "FINISHED"
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    assert {c.info.run_id for c in children_before} <= {c.info.run_id for c in children}
    for child in children:  # each epoch logged once, none missing: interrupted trials went on, not over
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/snr_db")]
        assert sorted(steps) == list(range(1, 7))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--gpus-per-trial", "64"], "--gpus-per-trial 64: the Ray cluster has"),
        (["--trials", "0"], "--trials 0 must be >= 1"),
        (["--resume"], "--resume: no search to continue"),
        (["--data-dir", "/nonexistent/audio"], "'/nonexistent/audio' does not exist"),
    ],
)
def test_bad_runs_are_refused_before_any_trial(extra, message, ray_local, search_env, capsys):
    flags, client = search_env
    assert run.main(["--space", str(SMOKE), *flags, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert client.get_experiment_by_name("tune-codec") is None
