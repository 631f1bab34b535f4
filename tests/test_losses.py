import pytest
import torch

from tune_codec.codec.losses import CodecLoss
from tune_codec.config import ADVERSARIAL, LOSS_WEIGHTS, make_config


def test_every_loss_is_zero_on_identical_inputs(tiny_config):
    x = torch.randn(4, 1, tiny_config.segment_samples) * 0.3
    loss = CodecLoss(tiny_config)(x, x.clone(), torch.tensor(0.0))
    assert set(loss.terms) == set(LOSS_WEIGHTS) - set(ADVERSARIAL)  # no discriminators
    sisdr = loss.terms.pop("rec/sisdr")
    assert sisdr.item() < -40  # a perfect copy: r = 1, the term's floor
    for name, value in loss.terms.items():
        assert value.item() == pytest.approx(0.0, abs=1e-6), name
    assert loss.total.item() == pytest.approx(0.0, abs=1e-6)  # sisdr_weight is 0 by default


def test_amplitude_losses_see_a_quiet_output():
    c = make_config({"sample_rate": 8000})
    x = torch.randn(4, 1, 2048) * 0.3
    terms = CodecLoss(c)(x, 0.2 * x, torch.tensor(0.0)).terms
    # a 5x too quiet output misses 0.8 of each segment's RMS and of its peak
    rms, peak = x.pow(2).mean(-1).sqrt(), x.abs().amax(-1)
    assert terms["amp/rms"].item() == pytest.approx((0.8 * rms).pow(2).mean().item(), rel=1e-5)
    assert terms["amp/peak"].item() == pytest.approx((0.8 * peak).pow(2).mean().item(), rel=1e-5)
    assert terms["amp/rms"].item() == pytest.approx((0.8 * 0.3) ** 2, rel=0.05)


def test_total_is_the_weighted_sum_and_zero_weights_train_nothing(tiny_config):
    x = torch.randn(4, 1, tiny_config.segment_samples) * 0.3
    y = (0.5 * x).requires_grad_()
    loss = CodecLoss(tiny_config)(x, y, torch.tensor(0.25))
    expected = sum(getattr(tiny_config, LOSS_WEIGHTS[n]) * v for n, v in loss.terms.items())
    assert loss.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert tiny_config.mel_weight == 0 and not loss.terms["rec/mel"].requires_grad
    assert loss.terms["amp/rms"].requires_grad


def test_the_sisdr_term_is_blind_to_the_level_and_trains_the_phase():
    c = make_config({"sample_rate": 8000, "sisdr_weight": 1.0})
    t = torch.arange(2048) / 8000
    x = torch.sin(2 * torch.pi * 440 * t).expand(2, 1, -1).contiguous() * 0.3
    shifted = torch.sin(2 * torch.pi * 440 * t + 1.0).expand(2, 1, -1) * 0.3  # the same magnitudes
    loss = CodecLoss(c)
    quiet, moved, inverted = (
        loss(x, y, torch.tensor(0.0)).terms["rec/sisdr"] for y in (0.2 * x, shifted, -x)
    )
    assert quiet.item() < -40  # a 5x too quiet copy is still a perfect waveform to SI-SDR
    # one radian of phase off: r = cos(1), SI-SDR -3.9 dB; the term 10 log10((1 - r) / (1 + r)), -5.3 dB
    r = torch.cos(torch.tensor(1.0))
    assert moved.item() == pytest.approx(10 * torch.log10((1 - r) / (1 + r)).item(), abs=0.1)
    assert inverted.item() > 40  # SI-SDR scores an inverted copy as perfect; this term as the worst
    y = shifted.clone().requires_grad_()
    loss(x, y, torch.tensor(0.0)).total.backward()
    assert y.grad.abs().sum() > 0
