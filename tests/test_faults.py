"""Faults a long search must survive: a killed driver or worker, a lost node, MLflow going away, storage
that cannot take the checkpoints. Real processes, real Ray nodes, a real MLflow server."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from tune_codec import run, tracking
from tune_codec.search.trial import TRIAL_ATTR, MlflowTrials

from .conftest import ENV, SMOKE, free_port, runs_of, space_file, wait_for, write_speechlike

pytestmark = pytest.mark.slow  # real processes killed, servers stopped, searches resumed

SLOW = dict(config={"num_epochs": 6, "max_steps_per_epoch": 40}, trials=3)  # long enough to hit mid-trial
EPOCHS = [1, 2, 3, 4, 5, 6]


def results(folder: Path) -> dict[str, list[dict]]:
    """Each trial's results so far (trial id -> list), read from the Ray experiment folder."""
    found = {}
    for path in folder.glob("*/result.json"):
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written
                break
        if rows:
            found[rows[0]["trial_id"]] = rows
    return found


def reaching(folder: Path, epoch: int) -> dict | None:
    """The latest result of a running trial that has reported `epoch`."""
    for rows in results(folder).values():
        last = rows[-1]
        if epoch <= last["epoch"] < 6:
            return last
    return None


def search(flags, space, *extra) -> list[str]:
    return ["--space", str(space), *flags, *extra]


def assert_the_study_went_on(journal: Path, children) -> None:
    """The resumed search told its Optuna study each trial once: one COMPLETE trial per MLflow run, and
    none left RUNNING (one the killed driver had asked for is failed)."""
    study = optuna.load_study(study_name="slow", storage=JournalStorage(JournalFileBackend(str(journal))))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.user_attrs[TRIAL_ATTR] for t in complete) == sorted(
        c.data.tags["trial_id"] for c in children
    )
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)


def on_first_result(monkeypatch, epoch: int, act) -> None:
    """act(result) when the driver gets the search's first result of `epoch`, before it logs it: a fault
    at a chosen point of the search, the same on a fast machine and a loaded one."""
    log_result, done = MlflowTrials.on_trial_result, set()

    def acting_first(self, iteration, trials, trial, result, **info):
        if result.get("epoch") == epoch and epoch not in done:
            done.add(epoch)
            act(result)
        return log_result(self, iteration, trials, trial, result, **info)

    monkeypatch.setattr(MlflowTrials, "on_trial_result", acting_first)


def assert_all_finished_each_epoch_once(client, children, count=3):
    assert len(children) == count
    for child in children:
        assert child.info.status == "FINISHED", child.info.run_name
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/snr_db")]
        assert sorted(steps) == EPOCHS, child.info.run_name


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGKILL, -9)], ids=["SIGINT", "SIGKILL"])
def test_a_killed_driver_resumes_with_the_same_runs_and_checkpoints(
    sig, code, ray_local, search_env, tmp_path
):
    flags, client = search_env
    slow = space_file(tmp_path, "slow", **SLOW)
    folder = tmp_path / "ray_results" / "slow"
    with open(tmp_path / "stderr", "w") as err:
        driver = subprocess.Popen(
            [sys.executable, "-m", "tune_codec.run", *search(flags, slow)], env=ENV, stderr=err
        )
        wait_for(lambda: reaching(folder, 2), 240, "a trial's second epoch")
        driver.send_signal(sig)
        assert driver.wait(timeout=120) == code
    parents_before, children_before = runs_of(client)
    assert len(tracking.read_state(tracking.state_path(folder))["done"]) < 3
    if (
        sig == signal.SIGINT
    ):  # a clean stop closes its runs and says how to go on; after SIGKILL the resume does
        assert all(r.info.status != "RUNNING" for r in parents_before + children_before)
        said = (tmp_path / "stderr").read_text()
        assert "continue with the same command and --resume" in said and "Tuner.restore" not in said

    assert run.main(search(flags, slow, "--resume")) == 0
    (parent,), children = runs_of(client)
    assert parent.info.run_id == parents_before[0].info.run_id and parent.info.status == "FINISHED"
    assert {c.info.run_id for c in children_before} <= {c.info.run_id for c in children}
    assert_all_finished_each_epoch_once(client, children)
    assert_the_study_went_on(tmp_path / "optuna.journal", children)
    for trial_dir in (p for p in folder.iterdir() if (p / "result.json").exists()):
        (checkpoint,) = trial_dir.glob("checkpoint_*")  # one kept, complete
        assert torch.load(checkpoint / "last.pt", weights_only=False)["epoch"] == 6


def saved_trials(folder: Path) -> set[str]:
    """The trial ids in Tune's latest saved experiment state: what a resume restores."""
    latest = max(folder.glob("experiment_state-*.json"))
    return {json.loads(trial[0])["trial_id"] for trial in json.loads(latest.read_text())["trial_data"]}


def test_a_driver_killed_before_tune_saved_a_new_trial_resumes_with_one_run_per_trial(
    ray_local, search_env, tmp_path
):
    flags, client = search_env
    slow = space_file(tmp_path, "slow", **SLOW, concurrency=1)
    folder = tmp_path / "ray_results" / "slow"

    def second_trial_started() -> bool:  # its MLflow run is open; Tune saves it at its first checkpoint
        try:
            return len(tracking.read_state(tracking.state_path(folder))["logged"]) >= 2
        except (OSError, ValueError):
            return False

    driver = subprocess.Popen([sys.executable, "-m", "tune_codec.run", *search(flags, slow)], env=ENV)
    wait_for(second_trial_started, 240, "the second trial's start")
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=60)
    logged = set(tracking.read_state(tracking.state_path(folder))["logged"])
    assert logged - saved_trials(folder)  # a run was opened for a trial that the resume will not have
    _, children_before = runs_of(client)
    assert len(children_before) == 2

    assert run.main(search(flags, slow, "--resume")) == 0
    (parent,), children = runs_of(client)
    assert parent.info.status == "FINISHED"
    assert_all_finished_each_epoch_once(client, children)  # exactly one run per trial
    assert_the_study_went_on(tmp_path / "optuna.journal", children)


@pytest.mark.parametrize("max_failures", [1, 0])
def test_a_trial_whose_worker_dies_is_retried_from_its_checkpoint_or_failed(
    max_failures, ray_local, search_env, tmp_path, capsys, monkeypatch
):
    flags, client = search_env
    slow = space_file(tmp_path, "slow", **SLOW)
    folder = tmp_path / "ray_results" / "slow"
    killed = {}

    def kill_the_worker(self, iteration, trials, trial, **info):
        """As the kernel's OOM killer would, once Tune has registered a trial's epoch-2 checkpoint (Tune
        calls on_trial_save after that): the retry, if any, goes on from epoch 3."""
        if not killed and trial.last_result.get("epoch") == 2:
            killed.update(trial.last_result)
            os.kill(killed["pid"], signal.SIGKILL)

    monkeypatch.setattr(MlflowTrials, "on_trial_save", kill_the_worker, raising=False)
    assert run.main(search(flags, slow, "--max-failures", str(max_failures))) == 0
    assert killed, "no worker was killed"
    (parent,), children = runs_of(client)
    assert parent.info.status == "FINISHED"
    victim = next(c for c in children if c.data.tags["trial_id"] == killed["trial_id"])
    others = [c for c in children if c is not victim]
    assert_all_finished_each_epoch_once(client, others, count=2)  # the search went on
    if max_failures:
        assert_all_finished_each_epoch_once(client, [victim], count=1)
        assert victim.data.tags["retries"] == "1" and "died" in victim.data.tags["last_error"]
        epochs = [r["epoch"] for r in results(folder)[killed["trial_id"]]]
        assert epochs == sorted(set(epochs)) and epochs[-1] == 6  # went on from its checkpoint
    else:
        assert victim.info.status == "FAILED"
        assert (
            victim.data.tags["stop_reason"].startswith("error: ")
            and "died" in victim.data.tags["stop_reason"]
        )
        assert f"trial {killed['trial_id']}" not in capsys.readouterr().out.split("best:")[-1]


def with_uri(flags, uri):
    flags = list(flags)
    flags[flags.index("--tracking-uri") + 1] = uri
    return flags


def test_mlflow_unreachable_at_start_is_an_error_before_any_trial(search_env, tmp_path, capsys):
    flags, _ = search_env
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert run.main(search(with_uri(flags, uri), SMOKE)) == 2
    err = capsys.readouterr().err
    assert f"cannot reach MLflow at {uri}" in err and err.count("\n") == 1
    assert not (tmp_path / "ray_results" / "smoke").exists()


def test_mlflow_going_away_mid_search_loses_no_update(
    ray_local, search_env, server, tmp_path, capsys, monkeypatch
):
    flags, _ = search_env
    # down from the first epoch-1 result to the first epoch-4 one: back mid-search
    on_first_result(monkeypatch, 1, lambda result: server.stop())
    on_first_result(monkeypatch, 4, lambda result: server.start())
    assert run.main(search(with_uri(flags, server.uri), space_file(tmp_path, "slow", **SLOW))) == 0
    err = capsys.readouterr().err
    assert err.count("unreachable") == 1 and "queued updates sent" in err
    client = MlflowClient(server.uri)
    (parent,), children = runs_of(client)
    assert parent.info.status == "FINISHED" and "best_snr_db" in parent.data.metrics
    assert_all_finished_each_epoch_once(client, children)
    for child in children:
        assert {a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")} == {
            "checkpoint/best.pt"
        }


def test_mlflow_down_at_the_end_keeps_updates_for_resume(
    ray_local, search_env, server, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(tracking, "FINAL_WAIT_S", 1.0)
    flags = with_uri(search_env[0], server.uri)
    slow = space_file(tmp_path, "slow", **SLOW)
    folder = tmp_path / "ray_results" / "slow"
    on_first_result(monkeypatch, 2, lambda result: server.stop())  # and not back before the end
    assert run.main(search(flags, slow)) == 1  # trained, but not all of it is in MLflow yet
    err = capsys.readouterr().err
    assert "still unreachable" in err and "--resume" in err
    assert tracking.read_state(tracking.state_path(folder))["pending"]

    monkeypatch.undo()
    server.start()
    assert run.main(search(flags, slow, "--resume")) == 0
    assert "queued updates sent" in capsys.readouterr().err
    assert not tracking.read_state(tracking.state_path(folder))["pending"]
    client = MlflowClient(server.uri)
    (parent,), children = runs_of(client)
    assert parent.info.status == "FINISHED" and "best_snr_db" in parent.data.metrics
    assert_all_finished_each_epoch_once(client, children)


@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MiB file system of its own (needs root, as CI has)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def read_only(mount: Path) -> Path:
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    return mount / "ray_results"


def full(mount: Path) -> Path:
    (mount / "filler").write_bytes(bytes(4 * 2**20 - 64 * 2**10))  # 64 KiB left
    return mount / "ray_results"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: (tmp.joinpath("file").write_text("x"), tmp / "file" / "results")[1], "Not a directory"),
        (read_only, "Read-only file system"),
        (full, "MiB free; 3 trials' checkpoints need about"),
    ],
    ids=["under-a-file", "read-only", "full"],
)
def test_storage_that_cannot_take_the_checkpoints_is_refused(make, message, search_env, request, capsys):
    flags, client = search_env
    where = make(
        request.getfixturevalue("tmpfs") if make in (read_only, full) else request.getfixturevalue("tmp_path")
    )
    flags[flags.index("--storage-path") + 1] = str(where)
    assert run.main(search(flags, SMOKE)) == 2
    err = capsys.readouterr().err
    assert f"--storage-path {str(where)!r}" in err and message in err and err.count("\n") == 1
    assert client.get_experiment_by_name("tune-codec") is None


def test_a_disk_that_fills_mid_search_stops_it_and_resume_finishes_it(
    ray_local, search_env, tmpfs, tmp_path, capsys
):
    flags, client = search_env
    flags[flags.index("--storage-path") + 1] = str(tmpfs / "ray_results")
    slow = space_file(tmp_path, "slow", **SLOW)
    folder = tmpfs / "ray_results" / "slow"
    filler = tmpfs / "filler"

    def fill_the_disk():
        wait_for(lambda: reaching(folder, 2), 240, "a trial's second epoch")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(bytes(2**16))
            except OSError:
                pass

    threading.Thread(target=fill_the_disk, daemon=True).start()
    assert run.main(search(flags, slow, "--max-failures", "1")) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err
    _, children = runs_of(client)
    assert children and all(c.info.status == "KILLED" for c in children)

    filler.unlink()  # the user makes room
    assert run.main(search(flags, slow, "--resume")) == 0
    (parent,), children = runs_of(client)
    assert parent.info.status == "FINISHED"
    assert_all_finished_each_epoch_once(client, children)


def test_trials_whose_loss_goes_non_finite_are_failed_with_the_reason(
    ray_local, search_env, tmp_path, capsys
):
    flags, client = search_env
    exploding = space_file(
        tmp_path, "exploding", search={"learning_rate": {"loguniform": [1.0e6, 1.0e7]}}, start=[], trials=2
    )
    assert run.main(search(flags, exploding)) == 1  # no healthy trial
    assert "no trial trained without collapsing" in capsys.readouterr().out
    (parent,), children = runs_of(client)
    assert parent.info.status == "FINISHED" and len(children) == 2
    for child in children:
        assert child.info.status == "FAILED"
        assert child.data.tags["stop_reason"].startswith("non-finite")
        assert child.data.metrics["search/score"] == -30.0  # what Optuna was told


def test_a_cache_disk_too_small_for_the_decoded_corpus_is_refused_before_decoding(
    search_env, tmpfs, tmp_path, capsys
):
    flags, client = search_env
    for i in range(3):  # 300 s at 8 kHz: 4.6 MiB as int16, on a 4 MiB disk
        write_speechlike(tmp_path / "long" / f"{i}.wav", 100, 8000, seed=i)
    flags[flags.index("--data-dir") + 1] = str(tmp_path / "long")
    flags[flags.index("--cache-dir") + 1] = str(tmpfs / "cache")
    assert run.main(search(flags, SMOKE)) == 2
    err = capsys.readouterr().err
    assert "the decoded corpus needs 4.6 MiB in the cache" in err and "MiB free; pass --cache-dir" in err
    assert err.count("\n") == 1 and not (tmpfs / "cache").exists()
    assert client.get_experiment_by_name("tune-codec") is None


def test_runs_that_start_at_once_on_a_new_sqlite_store_all_open_it(tmp_path):
    # MLflow creates a new store's tables on first use; without the lock, 4 processes starting together
    # on a new file fail with "duplicate column name" (11 of 12 failed in 3 tries)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = f"from tune_codec.tracking import check_reachable; check_reachable({uri!r})"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=ENV, stderr=subprocess.PIPE) for _ in range(4)
    ]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert MlflowClient(uri).get_experiment_by_name("Default") is not None
