"""Loss-weight schedules (PBT searches, their export, train_codec.py --schedule) and multi-objective
searches of quality against bitrate: real Ray, MLflow and Optuna, on real audio files."""

import math
from types import SimpleNamespace

import pytest
import yaml
from ray.tune.schedulers.pb2 import PB2

import train_codec
from tune_codec import run
from tune_codec.config import FIELDS, make_config
from tune_codec.report import report
from tune_codec.search import driver as search
from tune_codec.search import summary
from tune_codec.search.population import population_scheduler
from tune_codec.search.space import load_space, parse_space
from tune_codec.training.schedule import compress, describe, load_schedule, write_schedule

from .conftest import TINY, runs_of, space_file


def test_a_schedule_file_holds_the_changes_and_reads_back(tmp_path):
    history = [{"rms_weight": 10.0, "learning_rate": 1e-3}] * 2 + [{"rms_weight": 8.0, "learning_rate": 1e-3}]
    assert compress(history) == [(1, {"rms_weight": 10.0, "learning_rate": 1e-3}), (3, {"rms_weight": 8.0})]
    write_schedule(tmp_path / "s.yaml", make_config({**TINY, "rms_weight": 8.0}), history)
    config, schedule = load_schedule(tmp_path / "s.yaml")
    assert config.num_epochs == 3 and config.rms_weight == 10.0 and config.channels == TINY["channels"]
    assert schedule == compress(history)
    assert (
        describe(schedule, 3) == "changed at epochs 3 of 3"
        and describe(schedule[:1], 3) == "unchanged in 3 epochs"
    )


def test_pbt_moves_a_categorical_to_a_neighbouring_choice_and_keeps_a_range_inside_it():
    space = parse_space(
        {
            "scheduler": "pbt",
            "config": {"num_epochs": 6},
            "search": {"mel_weight": {"categorical": [0, 0.1, 1]}, "rms_weight": {"loguniform": [1, 30]}},
        }
    )
    scheduler = population_scheduler(space)
    scheduler._resample_probability = 0.0  # perturb, never draw afresh
    for _ in range(20):
        new, _ = scheduler._get_new_config(
            None, SimpleNamespace(config={"mel_weight": 0.1, "rms_weight": 29.0})
        )
        assert new["mel_weight"] in (0.0, 1.0) and 1 <= new["rms_weight"] <= 30


def test_pb2_explores_the_continuous_ranges_of_the_space():
    space = parse_space(
        {
            "scheduler": "pb2",
            "trials": 4,
            "config": {"num_epochs": 6},
            "search": {"rms_weight": {"loguniform": [1, 30]}, "peak_weight": {"fixed": 2.0}},
        }
    )
    scheduler = population_scheduler(space)
    assert isinstance(scheduler, PB2) and scheduler._hyperparam_bounds == {"rms_weight": [1.0, 30.0]}
    assert scheduler._perturbation_interval == 3 and scheduler.num_epochs == 6


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{"epoch": 1, "channels": 8}], "schedule[0]: channels: a schedule changes only l1_weight"),
        (
            [{"epoch": 2, "rms_weight": 1}, {"epoch": 2, "rms_weight": 3}],
            "schedule[1]: epoch 2 must be after 2",
        ),
        ([{"epoch": 9, "rms_weight": 1}], "schedule[0]: epoch 9 must be after 0 and at most num_epochs (3)"),
        ([{"epoch": 1, "rms_weight": -1}], "schedule[0]: rms_weight=-1.0 must be >= 0"),
        ([{"rms_weight": 1}], "schedule[0]: expected {epoch: N, <field>: value, ...}"),
    ],
)
def test_a_bad_schedule_is_one_line_exit_2_and_nothing_written(entries, message, audio_dir, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump({"config": {**TINY, "strides": list(TINY["strides"])}, "schedule": entries})
    )
    db, ckpt = tmp_path / "mlflow.db", tmp_path / "ckpt"
    flags = ["--data_dir", str(audio_dir), "--tracking_uri", str(db), "--checkpoint_dir", str(ckpt)]
    assert train_codec.main(["--schedule", str(path), *flags]) == 2
    err = capsys.readouterr().err
    assert f"--schedule '{path}': {message}" in err and err.count("\n") == 1
    assert not ckpt.exists() and not db.exists()
    path.write_text(
        yaml.safe_dump({"config": {"num_epochs": 2}, "schedule": [{"epoch": 1, "rms_weight": 1}]})
    )
    assert train_codec.main(["--schedule", str(path), "--rms_weight", "3", *flags]) == 2
    assert f"--rms_weight: --schedule '{path}' sets it" in capsys.readouterr().err


def test_a_pbt_search_changes_weights_in_training_and_its_schedule_replays(
    ray_local, search_env, tmp_path, capsys
):
    flags, client = search_env
    space = space_file(
        tmp_path,
        "pbt",
        trials=4,
        scheduler="pbt",
        pbt={"perturbation_interval": 1, "quantile_fraction": 0.5},  # the worse half copies, each epoch
        config={"num_epochs": 4, "max_steps_per_epoch": 2},
        stop={"grace_epochs": 4},
    )
    assert run.main(["--space", str(space), *flags]) == 0
    out = capsys.readouterr().out
    (parent,), children = runs_of(client)
    assert parent.data.params["scheduler"] == "pbt" and len(children) == 4
    # PBT gave at least one trial new weights or a new learning rate while it trained
    changed = 0
    for child in children:
        for key in ("schedule/rms_weight", "schedule/learning_rate"):
            values = {m.value for m in client.get_metric_history(child.info.run_id, key)}
            changed += (
                len(values) > 1 or float(child.data.params[key.removeprefix("schedule/")]) not in values
            )
    assert changed
    # the best trial's weights by epoch, exported beside best_config.yaml and logged to the search's run
    exported = tmp_path / "ray_results" / "pbt" / summary.SCHEDULE_FILE
    assert f"replay it: python train_codec.py --schedule {exported}" in out
    assert summary.SCHEDULE_FILE in {a.path for a in client.list_artifacts(parent.info.run_id)}
    config, schedule = load_schedule(exported)
    assert config.num_epochs == 4 and schedule[0][0] == 1
    best_snr = max(c.data.metrics["val/best_snr_db"] for c in children)
    # trained from scratch, the schedule reaches the PBT trial's result
    ckpt = tmp_path / "replay"
    replay = ["--schedule", str(exported), "--checkpoint_dir", str(ckpt), "--data_dir", flags[1]]
    assert train_codec.main([*replay, "--cache_dir", flags[3], "--tracking_uri", flags[-1]]) == 0
    replayed = float(capsys.readouterr().out.split("done: best SNR ")[1].split(" dB")[0])
    assert abs(replayed - best_snr) < 0.5
    # the report draws the schedule and says how to replay it
    assert report.main(["pbt", "--tracking-uri", flags[-1], "--out", str(tmp_path / "report")]) == 0
    assert "schedule of the best trial:" in capsys.readouterr().out
    assert (tmp_path / "report" / "schedule.png").stat().st_size > 0


def test_a_multi_objective_search_finds_the_best_trial_at_each_bitrate(
    ray_local, search_env, tmp_path, capsys
):
    flags, client = search_env
    space_path = space_file(
        tmp_path,
        "pareto",
        metric=["val/snr_db", "codec/kbps"],
        trials=4,
        search={"n_codebooks": {"int": [1, 3]}, "strides": {"categorical": [[2, 2], [2, 4]]}},
        start=[],
        config={"num_epochs": 2},
        stop={"grace_epochs": 2},
    )
    # Optuna is told both objectives, each in its direction, through OptunaSearch
    _, searcher = search.scheduling(load_space(space_path), search.parse_args(["--space", str(space_path)]))
    assert searcher.metric == [search.SCORE, "codec/kbps"] and searcher.mode == ["max", "min"]
    assert run.main(["--space", str(space_path), *flags]) == 0
    out = capsys.readouterr().out
    (parent,), children = runs_of(client)
    assert parent.data.params["objectives"] == "val/snr_db,codec/kbps"
    best_at: dict[float, float] = {}
    for child in children:
        kbps = child.data.metrics["codec/kbps"]
        config = make_config({k: v for k, v in child.data.params.items() if k in FIELDS})
        assert kbps == config.bitrate / 1000
        best_at[kbps] = max(best_at.get(kbps, -math.inf), child.data.metrics["val/best_snr_db"])
    front, top = set(), -math.inf
    for kbps in sorted(best_at):
        if best_at[kbps] > top:
            front.add(kbps)
        top = max(top, best_at[kbps])
    assert report.main(["pareto", "--tracking-uri", flags[-1], "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    for text in (out, printed):  # the search's summary and the report: a row per bitrate, the front marked
        rows = front_rows(text, len(best_at))
        assert set(rows) == set(best_at)
        assert {k for k, (_, on_front) in rows.items() if on_front} == front
        assert all(snr == pytest.approx(best_at[k], abs=1e-3) for k, (snr, _) in rows.items())
    assert (tmp_path / "report" / "pareto.png").stat().st_size > 0


def front_rows(text: str, n: int) -> dict[float, tuple[float, bool]]:
    """kbps -> (best SNR, on the front) from the table of the best trial at each bitrate in text."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("kbps") and " front " in line)
    at = lines[i].index(" front ") + 1
    return {
        float(line.split()[0]): (float(line.split()[1]), line[at : at + 5].strip() == "yes")
        for line in lines[i + 1 : i + 1 + n]
    }
