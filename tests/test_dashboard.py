"""A search's Optuna study is where Optuna's own tools find it: optuna.load_study, Optuna's CLI and a real
optuna-dashboard server, which answers over HTTP with the study's trials, new records included."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray import tune

from tune_codec.names import REASON, SCORE
from tune_codec.search.stopping import StopRules, is_useful
from tune_codec.search.trial import TRIAL_ATTR, BudgetSearch, make_sampler

from .conftest import ENV, free_port, wait_for

BIN = Path(sys.executable).parent  # this environment's commands: optuna, optuna-dashboard


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)
    except OSError:  # not listening yet
        return None


def test_the_study_is_named_after_the_search_and_holds_its_trials(smoke_search):
    journal = smoke_search.root / "optuna.journal"  # beside the MLflow database
    study = optuna.load_study(study_name="smoke", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert study.user_attrs["mlflow_run"] == smoke_search.parent.info.run_id
    trials = {t.user_attrs[TRIAL_ATTR]: t for t in study.trials}
    runs = {c.data.tags["trial_id"]: c for c in smoke_search.children}
    assert trials.keys() == runs.keys()
    for trial_id, trial in trials.items():
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert sorted(trial.intermediate_values) == [1, 2, 3]  # each epoch, as the search went
        assert trial.intermediate_values[3] == pytest.approx(runs[trial_id].data.metrics["search/score"])
        # its value: the best epoch, which its best.pt holds and the summary ranks; a stop rule's penalty
        penalised = not is_useful(runs[trial_id].data.tags["stop_reason"])
        best = trial.intermediate_values[3] if penalised else max(trial.intermediate_values.values())
        assert trial.value == pytest.approx(best)
        assert trial.params["rms_weight"] == pytest.approx(float(runs[trial_id].data.params["rms_weight"]))
    # Optuna's CLI, as the README gives it
    listed = subprocess.run(
        [BIN / "optuna", "trials", "--storage", str(journal), "--storage-class", "JournalFileBackend",
         "--study-name", "smoke", "-f", "json"],
        capture_output=True, text=True, env=ENV, check=True,
    )  # fmt: skip
    assert len(json.loads(listed.stdout)) == 3


def test_optuna_is_told_a_trials_best_epoch_and_a_stopped_trials_penalty():
    searcher = BudgetSearch(
        None,
        space={"rms_weight": tune.uniform(0, 10)},
        metric=SCORE,
        mode="max",
        sampler=make_sampler("tpe", 0, 8),
    )
    penalty = StopRules().penalty_db
    for trial_id, scores, reason in (
        ("healthy", [1.0, 5.0, 3.0], ""),
        ("collapsed", [2.0, 6.0, penalty], "range"),
    ):
        searcher.suggest(trial_id)
        for epoch, score in enumerate(scores, 1):
            result = {SCORE: score, "training_iteration": epoch, REASON: reason if epoch == 3 else ""}
            searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result)
    assert [t.value for t in searcher._ot_study.trials] == [5.0, penalty]
    assert [t.intermediate_values[3] for t in searcher._ot_study.trials] == [3.0, penalty]


@pytest.mark.slow  # a server
def test_optuna_dashboard_serves_the_study_and_sees_new_records(smoke_search, tmp_path):
    journal = smoke_search.root / "optuna.journal"
    port = free_port()
    log = open(tmp_path / "dashboard.log", "w")  # noqa: SIM115 - the server owns it
    server = subprocess.Popen(
        [BIN / "optuna-dashboard", str(journal), "--host", "127.0.0.1", "--port", str(port),
         "--server", "wsgiref"],
        stdout=log, stderr=log, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    try:
        api = f"http://127.0.0.1:{port}/api/studies"
        summaries = wait_for(lambda: get(api), 60, "optuna-dashboard")["study_summaries"]
        (summary,) = [s for s in summaries if s["study_name"] == "smoke"]
        attrs = {a["key"]: a["value"] for a in summary["user_attrs"]}
        assert attrs["mlflow_run"] == smoke_search.parent.info.run_id
        study = get(f"{api}/{summary['study_id']}")
        assert len(study["trials"]) == 3 and all(t["state"] == "Complete" for t in study["trials"])
        assert {p["name"] for t in study["trials"] for p in t["params"]} == {"rms_weight", "learning_rate"}
        shown = {a["value"] for t in study["trials"] for a in t["user_attrs"] if a["key"] == TRIAL_ATTR}
        assert shown == {c.data.tags["trial_id"] for c in smoke_search.children}

        # another writer appends to the journal while the server runs: the next request shows it
        storage = JournalStorage(JournalFileBackend(str(journal)))
        optuna.create_study(storage=storage, study_name="written-while-served").add_trial(
            optuna.trial.create_trial(value=1.0)
        )
        names = lambda: {s["study_name"] for s in get(api)["study_summaries"]}  # noqa: E731
        wait_for(lambda: "written-while-served" in names(), 30, "the new study on the dashboard")
    finally:
        server.kill()
        server.wait()
