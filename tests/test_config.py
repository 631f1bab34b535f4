import argparse
import re

import pytest

from tune_codec.config import DEFAULTS, FIELDS, add_config_flags, config_from_args, make_config, to_flags


def test_defaults_reproduce_the_original_fix_and_state_the_bitrate():
    assert (DEFAULTS.rms_weight, DEFAULTS.peak_weight, DEFAULTS.mel_weight) == (10.0, 5.0, 0.0)
    assert DEFAULTS.bitrate == 8000 and DEFAULTS.compression == 32
    assert "8 kbps" in DEFAULTS.describe() and "32x" in DEFAULTS.describe()


def test_unknown_field_is_an_error_naming_it_and_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown config field lerning_rate.*allowed: .*learning_rate"):
        make_config({"lerning_rate": 1e-3})


@pytest.mark.parametrize(
    "params, bad",
    [
        ({"learning_rate": 0}, "learning_rate=0.0"),
        ({"learning_rate": -1e-3}, "learning_rate=-0.001"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"num_epochs": -2}, "num_epochs=-2"),
        ({"rms_weight": -1}, "rms_weight=-1.0"),
        ({"valid_fraction": 1.5}, "valid_fraction=1.5"),
        ({"batch_size": 2.5}, "batch_size=2.5"),
        ({"batch_size": "many"}, "batch_size='many'"),
        ({"bf16": "maybe"}, "bf16='maybe'"),
        ({"best_metric": "loss"}, "best_metric='loss' must be one of val/snr_db"),
        ({"best_metric": "val/pesq", "perceptual_segments": 0}, "best_metric=val/pesq is scored on"),
        ({"adv_loss": "wasserstein"}, "adv_loss='wasserstein' must be one of hinge, lsq"),
        ({"lr_decay": "step"}, "lr_decay='step' must be one of none, exponential, cosine"),
        ({"quantizer_dropout": 1.5}, "quantizer_dropout=1.5 must be in [0, 1]"),
        ({"adam_beta2": 1.0}, "adam_beta2=1.0 must be in [0, 1)"),
        ({"adv_start_epoch": 0}, "adv_start_epoch=0 must be >= 1"),
        ({"feat_weight": -1}, "feat_weight=-1.0 must be >= 0"),
    ],
)
def test_bad_values_are_errors_naming_the_value(params, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        make_config(params)


def test_segment_length_is_a_whole_number_of_frames():
    c = make_config({"segment_seconds": 0.3})
    assert c.segment_samples % c.hop == 0 and abs(c.segment_samples - 4800) < c.hop


def test_flags_round_trip_through_the_parser():
    config = make_config({"learning_rate": 1e-5, "strides": (2, 4), "bf16": False, "rms_weight": 20})
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(to_flags(config))
    assert config_from_args(args) == config
    assert to_flags(DEFAULTS) == []
    assert len(FIELDS) == len([a for a in parser._actions if a.dest in FIELDS])


def test_named_configs_ship_the_cpu_demo_and_an_8_kbps_gpu_codec(tmp_path):
    from tune_codec.config import DEFAULTS, load_config, named_configs

    assert {"cpu-demo", "speech16k-8kbps"} <= set(named_configs())
    assert load_config("cpu-demo") == DEFAULTS
    gpu = load_config("speech16k-8kbps")
    assert gpu.bitrate == 8000 and gpu.adversarial and gpu.balancer and gpu.quantizer_dropout > 0
    assert gpu.kbps_at(1) == 0.5
    mine = tmp_path / "mine.yaml"
    mine.write_text("channels: 8\nstrides: [2, 4, 8]\n")
    assert load_config(mine) == make_config({"channels": 8})
    assert load_config("mine.yaml", relative_to=tmp_path / "space.yaml").channels == 8
    with pytest.raises(
        ValueError, match="config 'nope' is neither a named config .*cpu-demo.* nor a YAML file"
    ):
        load_config("nope")
    mine.write_text("chanels: 8\n")
    with pytest.raises(ValueError, match="config .*mine.yaml.*: unknown config field chanels"):
        load_config(mine)


def test_every_field_has_its_help_line():
    from tune_codec.config import FIELDS

    assert [name for name, f in FIELDS.items() if not f.metadata.get("help")] == []
