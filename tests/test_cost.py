import json

import pytest
from mlflow.tracking import MlflowClient

from tune_codec import run, tracking
from tune_codec.report import report
from tune_codec.search.cost import COST, parse_budget
from tune_codec.tracking import resolve_tracking_uri

from .conftest import SMOKE


def with_flags(flags: list[str], **values) -> list[str]:
    """flags with --name value pairs replaced or added (keys with _ for -)."""
    flags = list(flags)
    for key, value in values.items():
        flag = f"--{key.replace('_', '-')}"
        if flag in flags:
            flags[flags.index(flag) + 1] = str(value)
        else:
            flags += [flag, str(value)]
    return flags


def test_each_trial_reports_the_device_hours_it_held_and_the_search_sums_them(smoke_search):
    s = smoke_search
    search_hours = (s.parent.info.end_time - s.parent.info.start_time) / 1000 / 3600
    for child in s.children:
        history = sorted(s.client.get_metric_history(child.info.run_id, COST), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2, 3]
        assert history[0].value < history[1].value < history[2].value  # charged as the trial goes
        # one CPU held: at least the training time, at most the whole search's wall time
        assert child.data.metrics["time/train_s"] / 3600 < child.data.metrics[COST] < search_hours
    total = sum(child.data.metrics[COST] for child in s.children)
    assert s.parent.data.params["device"] == "CPU" and s.parent.data.params["price_per_gpu_hour"] == "2.5"
    assert s.parent.data.metrics[COST] == pytest.approx(total)
    assert s.parent.data.metrics["cost/dollars"] == pytest.approx(2.5 * total)
    assert f"cost: {total:.3g} CPU-hours" in s.out and "at $2.50 per CPU-hour for 3 trials" in s.out
    assert "per useful trial (3 of 3)" in s.out


@pytest.mark.parametrize(
    "text, price, hours", [("2h", None, 2.0), ("0.5H", 3.0, 0.5), ("5usd", 2.5, 2.0), ("1e-3h", None, 1e-3)]
)
def test_a_budget_is_device_hours_or_dollars_at_the_price(text, price, hours):
    assert parse_budget(text, price).hours == pytest.approx(hours)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--budget", "2x"], "--budget '2x': expected a positive amount of device-hours like 2h"),
        (["--budget=-1h"], "--budget '-1h': expected a positive amount"),
        (["--budget", "nanh"], "--budget 'nanh': expected a positive amount"),
        (["--budget", "5usd"], "--budget 5usd: a budget in dollars needs --price-per-gpu-hour"),
        (["--price-per-gpu-hour", "-2", "--budget", "1h"], "--price-per-gpu-hour -2 must be > 0"),
    ],
)
def test_bad_budgets_and_prices_are_refused_before_anything_starts(extra, message, tmp_path, capsys):
    db = tmp_path / "mlflow.db"
    assert run.main(["--space", str(SMOKE), "--tracking-uri", str(db), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not db.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--budget", "1h"], "--budget 1h: the search was started with None"),
        (["--sampler", "random"], "--sampler random: the search was started with tpe"),
        (["--seed", "3"], "--seed 3: the search was started with 0"),
    ],
)
def test_a_resume_keeps_the_budget_sampler_and_seed_it_started_with(extra, message, smoke_search, capsys):
    assert run.main([*smoke_search.flags, "--resume", *extra]) == 2
    assert f"{message}; a resume keeps it" in capsys.readouterr().err


def test_a_spent_budget_launches_no_new_trial_and_lets_the_running_one_finish(smoke_search, tmp_path, capsys):
    db = tmp_path / "mlflow.db"
    flags = with_flags(
        smoke_search.flags,
        tracking_uri=db,
        storage_path=tmp_path / "ray_results",
        name="budget",
        concurrency=1,
        budget="1e-6h",  # spent by the first trial's first epoch
    )
    assert run.main(flags) == 0
    out = capsys.readouterr().out
    assert "budget 1e-6h spent (" in out and "no new trials after 1 of 3; the running ones finished" in out
    client = MlflowClient(resolve_tracking_uri(str(db)))
    runs = client.search_runs([client.get_experiment_by_name("tune-codec").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("tune_codec.role") == "search"]
    (child,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.data.params["budget_device_hours"] == "1e-06"
    assert child.data.tags["stop_reason"] == "completed" and child.data.metrics["epoch"] == 3
    state = json.loads(tracking.state_path(tmp_path / "ray_results" / "budget").read_text())
    assert state["done"] == [child.data.tags["trial_id"]]

    # the report of this search says the same, and that one trial is too few for importances
    assert report.main(["budget", "--tracking-uri", str(db), "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert "no new trials after 1 of 3" in printed and "1 of 3 trials run" in printed
    assert "importances and parallel coordinates need 2 trials that reported a score; 1 did" in printed
    written = {p.name for p in (tmp_path / "report").iterdir()}
    assert written == {"report.html", "report.txt", "history.png", "best_vs_fields.png"}
