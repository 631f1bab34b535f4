from pathlib import Path

import pytest
import yaml

from tune_codec.config import FIELDS, make_config
from tune_codec.errors import SpaceError
from tune_codec.search.space import load_space, parse_space, to_optuna
from tune_codec.search.stopping import StopRules

SHIPPED = Path(__file__).parent.parent / "search_spaces"
SPACES = sorted(SHIPPED.glob("*.yaml"))
GOOD = {"search": {"rms_weight": {"loguniform": [1, 100]}}}


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_shipped_space_loads_and_gives_a_full_config_per_trial(path):
    space = load_space(path)
    assert set(space.param_space()) == set(FIELDS)
    assert space.searched() and space.trials >= len(space.start)


def test_the_amplitude_space_starts_from_the_hand_fix():
    space = load_space(SHIPPED / "amplitude.yaml")
    first = space.start[0]
    assert (first["rms_weight"], first["peak_weight"], first["mel_weight"], first["l1_weight"]) == (
        10,
        5,
        0,
        1,
    )


def test_settings_and_fixed_values_are_applied():
    space = parse_space(
        {
            "trials": 5,
            "config": {"num_epochs": 7},
            "stop": {"range_ratio": [0.8, 1.25], "grace_epochs": 2},
            "search": {**GOOD["search"], "channels": {"fixed": 8}},
        }
    )
    assert space.trials == 5 and space.base.num_epochs == 7
    assert space.stop == StopRules(grace_epochs=2, range_ratio=(0.8, 1.25))
    assert space.param_space()["num_epochs"] == 7 and space.param_space()["channels"] == 8
    assert space.base.best_metric == "val/snr_db"  # each trial's best.pt follows the space's metric
    assert parse_space({**GOOD, "metric": "val/stoi"}).param_space()["best_metric"] == "val/stoi"


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"search": {"rms_wieght": {"uniform": [0, 1]}}},
            "search.rms_wieght: 'rms_wieght' is not a config field",
        ),
        ({"search": {"rms_weight": {"uniform": [5, 1]}}}, "search.rms_weight: low 5 must be below high 1"),
        ({"search": {"learning_rate": {"uniform": [-1, 1]}}}, "learning_rate=-1.0 must be > 0"),
        ({"search": {"learning_rate": {"loguniform": [0, 1]}}}, "loguniform needs low > 0, got 0"),
        (
            {"search": {"rms_weight": {"normal": [0, 1]}}},
            "unknown distribution 'normal' (allowed: loguniform",
        ),
        ({"search": {"rms_weight": {"categorical": []}}}, "categorical needs a non-empty list"),
        ({"search": {"rms_weight": {"int": [4, 8.5]}}}, "int needs whole-number bounds"),
        ({"search": {"channels": {"int": [4, 8.5]}}}, "search.channels: channels=8.5 is not a valid int"),
        ({"search": {"sample_rate": {"categorical": [8000, 16000]}}}, "set it under config:"),
        (  # a hop of 128 does not divide the 8000-sample segment: the data would change
            {"search": {"strides": {"categorical": [[2, 4, 8], [2, 8, 8]]}}},
            "search.strides: [2, 8, 8] changes the data shared by all trials (7936-sample segments",
        ),
        ({**GOOD, "scheduler": "hyperband"}, "scheduler: 'hyperband' is not one of asha, pbt, pb2"),
        (
            {**GOOD, "scheduler": "pbt", "search": {"channels": {"int": [8, 16]}}},
            "search.channels: pbt changes the searched fields during training, and channels is built into",
        ),
        (
            {**GOOD, "scheduler": "pb2", "search": {"mel_weight": {"categorical": [0, 1]}}},
            "search.mel_weight: pb2 searches continuous ranges (loguniform, uniform), not categorical",
        ),
        ({**GOOD, "scheduler": "pbt", "asha": {"grace_period": 2}}, "asha: a pbt search has no ASHA"),
        ({**GOOD, "pbt": {"perturbation_interval": 2}}, "pbt: needs scheduler: pbt or pb2"),
        (
            {**GOOD, "scheduler": "pbt", "config": {"num_epochs": 12}, "pbt": {"perturbation_interval": 12}},
            "pbt.perturbation_interval: 12 must be an int from 1 to num_epochs - 1 (11)",
        ),
        (
            {**GOOD, "scheduler": "pbt", "pbt": {"quantile_fraction": 0.8}},
            "pbt.quantile_fraction: 0.8 must be in (0, 0.5]",
        ),
        ({**GOOD, "metric": ["val/snr_db", "loss"]}, "or a list of one and codec/kbps"),
        (
            {**GOOD, "metric": ["val/snr_db", "codec/kbps"], "asha": {"grace_period": 2}},
            "metric: a search of val/snr_db and codec/kbps ranks trials on both; ASHA and PBT rank on one",
        ),
        ({"search": {}}, "names no field with a distribution"),
        ({"search": [1, 2]}, "search: expected a mapping of config fields to distributions, got [1, 2]"),
        ({**GOOD, "trials": "many"}, "trials: 'many' must be an int >= 1"),
        ({**GOOD, "trails": 3}, "unknown setting trails (allowed: metric"),
        ({**GOOD, "trials": 0}, "trials: 0 must be an int >= 1"),
        ({**GOOD, "metric": "loss"}, "metric: 'loss' must be one of val/snr_db"),
        (
            {**GOOD, "metric": "val/pesq", "config": {"perceptual_segments": 0}},
            "metric: val/pesq is measured on config.perceptual_segments, which is 0",
        ),
        (
            {**GOOD, "metric": "val/stoi", "config": {"best_metric": "val/pesq"}},
            "config.best_metric: val/pesq is not the space's metric val/stoi",
        ),
        (
            {"search": {"best_metric": {"categorical": ["val/pesq"]}}},
            "best_metric follows the space's metric:",
        ),
        ({**GOOD, "config": {"batch_size": 0}}, "config: batch_size=0 must be >= 1"),
        ({**GOOD, "stop": {"range_ratio": [1.5, 2.0]}}, "must be [low, high] with low < 1 < high"),
        ({**GOOD, "stop": {"patience": 2}}, "allowed keys: grace_epochs"),
        (
            {**GOOD, "asha": {"grace_period": 500}},
            "asha.grace_period: 500 must be an int from 1 to num_epochs",
        ),
        (
            {**GOOD, "start": [{"learning_rate": 1e-3}]},
            "start[0]: must give exactly the searched fields rms_weight",
        ),
        ({**GOOD, "start": [{"rms_weight": -1}]}, "start[0]: rms_weight=-1.0 must be >= 0"),
        ({**GOOD, "base": "gpu"}, "base: config 'gpu' is neither a named config (cpu-demo, cpu-freq-6kbps"),
        (
            {**GOOD, "scheduler": "pbt", "search": {"adv_weight": {"uniform": [0, 1]}}},
            "search.adv_weight: pbt changes the searched fields during training, and adv_weight is built",
        ),
    ],
)
def test_a_bad_space_is_one_line_naming_the_value(raw, message):
    with pytest.raises(SpaceError) as e:
        parse_space(raw)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: {rms_weight: [1, 2\n")
    with pytest.raises(SpaceError, match=r"bad.yaml: not valid YAML"):
        load_space(bad)
    with pytest.raises(SpaceError, match=r"missing.yaml' is neither a bundled search space \(adversarial, a"):
        load_space(tmp_path / "missing.yaml")
    with pytest.raises(SpaceError, match=r"search_spaces: cannot read \(Is a directory\)"):
        load_space(SHIPPED)


def test_a_bundled_space_is_named_without_its_folder():
    by_name = load_space("amplitude")
    assert by_name == load_space(SHIPPED / "amplitude.yaml")
    assert by_name.trials == 8 and "rms_weight" in by_name.search
    assert load_space("perceptual").base.model == "freq"  # its base, a named config, still resolves


def test_a_population_searches_only_what_can_change_during_training():
    space = parse_space(
        {
            "scheduler": "pbt",
            "config": {"num_epochs": 12},
            "search": {**GOOD["search"], "channels": {"fixed": 8}},
        }
    )
    assert space.population and space.asha is None and space.param_space()["channels"] == 8
    # every perturbation's checkpoint is kept for a worse trial to copy: 12 epochs, one every 3
    assert space.checkpoint_every == 3 and space.checkpoints_kept == 4
    assert parse_space(GOOD).checkpoints_kept == 1


def test_a_multi_objective_space_searches_strides_whose_hop_divides_the_segment():
    space = parse_space(
        {
            "metric": ["val/pesq", "codec/kbps"],
            "search": {"n_codebooks": {"int": [1, 8]}, "strides": {"categorical": [[2, 4, 5], [4, 5, 8]]}},
        }
    )
    assert space.metric == "val/pesq" and space.objectives == ("val/pesq", "codec/kbps")
    assert space.asha is None and space.base.best_metric == "val/pesq"
    # Optuna holds the strides as text; a trial's config turns it back into the tuple
    assert to_optuna("strides", *space.search["strides"]).choices == ("2,4,5", "4,5,8")
    assert make_config({"strides": "4,5,8"}).hop == 160


def test_a_space_starts_from_a_named_config_or_a_config_file_beside_it(tmp_path):
    space = parse_space({**GOOD, "base": "speech16k-8kbps", "config": {"num_epochs": 2}})
    assert space.base.n_codebooks == 16 and space.base.balancer and space.base.num_epochs == 2
    (tmp_path / "mine.yaml").write_text("channels: 8\n")
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({**GOOD, "base": "mine.yaml"}))
    assert load_space(tmp_path / "space.yaml").base.channels == 8
