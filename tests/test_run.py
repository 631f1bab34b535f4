import optuna
import pytest
import torch
import yaml

from tune_codec import run
from tune_codec.config import make_config
from tune_codec.report import report
from tune_codec.search import cluster, summary, trial

from .conftest import SMOKE, runs_of, space_file


def test_smoke_search_records_a_tree_of_runs_and_the_best_config(ray_local, search_env, tmp_path, capsys):
    flags, client = search_env
    assert run.main(["--space", str(SMOKE), *flags]) == 0
    out = capsys.readouterr().out
    (parent,), children = runs_of(client)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_collapsed"] == 0
    assert parent.data.params["sampler"] == "tpe"
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
    best_file = tmp_path / "ray_results" / "smoke" / summary.BEST_FILE
    best = make_config(yaml.safe_load(best_file.read_text()))
    best_snr = max(c.data.metrics["val/best_snr_db"] for c in children)
    assert parent.data.metrics["best_snr_db"] == pytest.approx(best_snr)
    assert f"best validation SNR {best_snr:.2f} dB" in out
    assert "train it: python train_codec.py" in out and f"--rms_weight {best.rms_weight}" in out
    # the same name again is refused, and nothing is overwritten
    assert run.main(["--space", str(SMOKE), *flags]) == 2
    assert "already holds a search; pass --resume" in capsys.readouterr().err
    assert best_file.exists() and len(runs_of(client)[1]) == 3


def test_a_search_for_another_metric_keeps_and_names_the_best_by_that_metric(
    ray_local, search_env, tmp_path, capsys
):
    flags, client = search_env
    space = space_file(tmp_path, "sisdr", metric="val/si_sdr_db", config={"num_epochs": 4})
    assert run.main(["--space", str(space), *flags]) == 0
    out = capsys.readouterr().out
    (parent,), children = runs_of(client)
    best_of = {}
    for child in children:
        history = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "val/si_sdr_db")}
        best_epoch = max(history, key=history.get)
        best_of[child.data.tags["trial_id"]] = history[best_epoch]
        assert child.data.metrics["val/best_si_sdr_db"] == pytest.approx(history[best_epoch])
        # each trial's best.pt holds its best epoch by SI-SDR, not by SNR
        path = client.download_artifacts(
            child.info.run_id, "checkpoint/best.pt", str(tmp_path / child.info.run_id)
        )
        assert torch.load(path, weights_only=False)["metrics"]["epoch"] == best_epoch
    trial_id = max(best_of, key=best_of.get)
    assert f"best: trial {trial_id}, best validation SI-SDR {best_of[trial_id]:.2f} dB (SNR " in out
    assert parent.data.metrics["best_si_sdr_db"] == pytest.approx(best_of[trial_id])
    assert report.main(["sisdr", "--tracking-uri", flags[-1], "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert f"best: trial {trial_id}, best validation SI-SDR {best_of[trial_id]:.2f} dB at epoch" in printed
    assert "best SI-SDR dB" in printed.splitlines()[0] and "judge it on held-out audio" in printed


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
    assert run.main(["--space", str(collapse), *flags, "--sampler", "random"]) == 1
    assert "no trial trained without collapsing" in capsys.readouterr().out
    (parent,), children = runs_of(client)
    assert parent.data.params["sampler"] == "random"
    assert parent.data.metrics["trials_collapsed"] == 2 and parent.data.metrics["epochs_saved"] == 2 * 4
    for child in children:
        assert child.data.tags["stop_reason"].startswith("range collapse: ratio")
        assert child.data.metrics["search/score"] == -30.0  # what Optuna was told
        assert max(m.step for m in client.get_metric_history(child.info.run_id, "val/snr_db")) == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--gpus-per-trial", "64"], "--gpus-per-trial 64: the Ray cluster has"),
        (["--gpus-per-trial", "1.5"], "--gpus-per-trial 1.5: more than 1 GPU must be a whole number"),
        (["--trials", "0"], "--trials 0 must be >= 1"),
        (["--max-failures", "-1"], "--max-failures -1 must be >= 0"),
        (["--resume"], "--resume: no search to continue"),
        (["--data-dir", "/nonexistent/audio"], "'/nonexistent/audio' does not exist"),
        (
            ["--space", str(SMOKE.parent / "pbt.yaml"), "--budget", "1h"],
            "--budget: a pbt population trains together; size it with --trials",
        ),
    ],
)
def test_bad_runs_are_refused_before_any_trial(extra, message, ray_local, search_env, tmp_path, capsys):
    flags, client = search_env
    assert run.main(["--space", str(SMOKE), *flags, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert client.get_experiment_by_name("tune-codec") is None
    assert not (tmp_path / "ray_results").exists()  # nothing written, not even the storage folder


def proposals(sampler, n: int) -> list[float]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", -10, 10) - 3) ** 2, n_trials=n)
    return [t.params["x"] for t in study.trials]


@pytest.mark.parametrize("trials, random_first", [(3, 2), (8, 2), (24, 6), (200, 10)])
def test_tpe_learns_after_a_quarter_of_the_trials(trials, random_first):
    tpe = proposals(trial.make_sampler("tpe", 0, trials), random_first + 1)
    random = proposals(trial.make_sampler("random", 0, trials), random_first + 1)
    assert tpe[:random_first] == random[:random_first] and tpe[random_first] != random[random_first]


@pytest.mark.parametrize(
    "gpus, concurrency, share", [(0, 4, 0), (1, 4, 0.25), (1, 3, 1 / 3), (2, 3, 0.5), (4, 4, 1), (8, 2, 1)]
)
def test_trials_share_the_gpus_evenly_by_default(gpus, concurrency, share):
    assert cluster.share_gpus(gpus, concurrency) == pytest.approx(share)
