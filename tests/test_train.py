import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tune_codec.data.segments import CodecData
from tune_codec.names import BEST, LAST, SAMPLES
from tune_codec.training.checkpoint import load_codec, load_state
from tune_codec.training.train import train


def test_tiny_training_reports_finite_falling_loss_and_writes_checkpoints(tiny_config, tiny_data, tmp_path):
    reports = []
    config = replace(tiny_config, num_epochs=4)
    final = train(
        config,
        tiny_data,
        lambda m, d: reports.append((m, d)),
        checkpoint_dir=tmp_path,
        quiet=True,
    )
    losses = [m["loss/total"] for m, _ in reports]
    assert [m["epoch"] for m, _ in reports] == [1, 2, 3, 4]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert final == reports[-1][0]
    for key in (
        "val/snr_db",
        "val/si_sdr_db",
        "val/range_ratio",
        "val/rms_ratio",
        "vq/perplexity",
        "rec/mel",
        "val/stoi",  # on the first perceptual_segments validation segments
    ):
        assert any(k.endswith(key) for k in final), key
    assert 0 <= final["val/stoi"] <= 1
    assert (tmp_path / LAST).exists() and (tmp_path / BEST).exists()
    written = {p.name for p in (tmp_path / SAMPLES).iterdir()}
    assert written >= {"input_0.wav", "output_0.wav", "waveform.png", "spectrogram.png", "index.html"}
    model, saved = load_codec(tmp_path / BEST)
    assert saved == config and model.hop == config.hop


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tiny_config, tiny_data, tmp_path):
    straight = train(tiny_config, tiny_data, checkpoint_dir=tmp_path / "a", quiet=True)
    first = replace(tiny_config, num_epochs=1)
    train(first, tiny_data, checkpoint_dir=tmp_path / "b", quiet=True)
    resumed = train(
        tiny_config,
        tiny_data,
        checkpoint_dir=tmp_path / "b",
        resume_from=tmp_path / "b",
        quiet=True,
    )
    a, b = load_state(tmp_path / "a"), load_state(tmp_path / "b")
    assert a["epoch"] == b["epoch"] == tiny_config.num_epochs
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert straight["val/snr_db"] == resumed["val/snr_db"]


def test_non_finite_loss_raises(tiny_config, tiny_data, tmp_path):
    nan = replace(tiny_data.train, scales=np.full(len(tiny_data.train), np.nan, np.float32))
    bad = CodecData(nan, tiny_data.valid, 8000, ["a"], ["b"])
    with pytest.raises(FloatingPointError, match="non-finite loss at epoch 1 step 1"):
        train(tiny_config, bad, checkpoint_dir=tmp_path, quiet=True)


def test_data_that_does_not_fit_the_config_is_refused(tiny_config, tiny_data, tmp_path):
    other = replace(tiny_config, segment_seconds=0.1)
    with pytest.raises(ValueError, match="config wants"):
        train(other, tiny_data, checkpoint_dir=tmp_path, quiet=True)


def test_a_schedule_changes_the_weights_and_learning_rate_from_its_epochs_and_is_kept(
    tiny_config, tiny_data, tmp_path
):
    schedule = [(2, {"rms_weight": 3.0}), (3, {"learning_rate": 1e-4, "mel_weight": 0.5})]
    reports = []
    train(tiny_config, tiny_data, lambda m, d: reports.append(m), checkpoint_dir=tmp_path, quiet=True,
          schedule=schedule)  # fmt: skip
    logged = [
        (m["schedule/rms_weight"], m["schedule/learning_rate"], m["schedule/mel_weight"]) for m in reports
    ]
    assert logged == [(10.0, 3e-3, 0.0), (3.0, 3e-3, 0.0), (3.0, 1e-4, 0.5)]
    state = load_state(tmp_path)
    assert [h["rms_weight"] for h in state["history"]] == [10.0, 3.0, 3.0]
    assert state["optimizer"]["param_groups"][0]["lr"] == 1e-4
    assert state["config"]["mel_weight"] == 0.5  # last.pt holds the config of its epoch
    # the total each epoch is the sum of the terms at that epoch's weights (the mel term weighted from 3 on)
    for m, (rms, _, mel) in zip(reports, logged, strict=True):
        weights = {"rec/l1": 1.0, "rec/mel": mel, "amp/rms": rms, "amp/peak": 5.0, "vq/commit": 1.0}
        assert m["loss/total"] == pytest.approx(sum(w * m[f"loss/{k}"] for k, w in weights.items()), rel=1e-5)


def test_a_resumed_run_takes_new_weights_and_learning_rate_but_not_a_new_model(
    tiny_config, tiny_data, tmp_path
):
    train(replace(tiny_config, num_epochs=2), tiny_data, checkpoint_dir=tmp_path, quiet=True)
    mutated = replace(tiny_config, rms_weight=2.5, learning_rate=5e-4)  # what PBT hands a trial
    final = train(mutated, tiny_data, checkpoint_dir=tmp_path, resume_from=tmp_path, quiet=True)
    assert final["schedule/rms_weight"] == 2.5 and final["schedule/learning_rate"] == 5e-4
    state = load_state(tmp_path)
    assert [h["learning_rate"] for h in state["history"]] == [3e-3, 3e-3, 5e-4]
    assert state["optimizer"]["param_groups"][0]["lr"] == 5e-4
    with pytest.raises(
        ValueError, match="trained with other channels; only the loss weights and the learning"
    ):
        train(replace(mutated, channels=8, num_epochs=4), tiny_data, checkpoint_dir=tmp_path,
              resume_from=tmp_path, quiet=True)  # fmt: skip
