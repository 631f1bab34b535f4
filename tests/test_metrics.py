import math

import pytest
import torch

from tune_codec.metrics import codebook_metrics, perceptual, perplexity, si_sdr_db, signal_metrics, snr_db

from .conftest import speechlike


def sine(n=4, length=8000, f=440.0):
    t = torch.arange(length) / 16000
    return torch.stack([0.5 * torch.sin(2 * math.pi * (f + 50 * i) * t) for i in range(n)])


def test_snr_of_known_noise_and_gain_errors():
    x = sine()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    noise *= (x.pow(2).mean() / noise.pow(2).mean() / 100).sqrt()  # 20 dB below the signal
    assert snr_db(x, x + noise) == pytest.approx(20.0, abs=1e-3)
    assert snr_db(x, 0.9 * x) == pytest.approx(20.0, abs=1e-3)  # a 10% gain error caps SNR at 20 dB
    assert snr_db(x, 0 * x) == pytest.approx(0.0, abs=1e-6)  # silence is 0 dB
    assert snr_db(x, x) == math.inf


def test_si_sdr_ignores_gain_but_not_noise():
    x = sine()
    assert si_sdr_db(x, 0.2 * x) > 60
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    noise *= (x.pow(2).mean(-1, keepdim=True) / noise.pow(2).mean(-1, keepdim=True) / 10).sqrt()
    assert si_sdr_db(x, x + noise) == pytest.approx(10.0, abs=0.2)


def test_the_original_failure_reads_as_such():
    x = sine()
    m = signal_metrics(x, 0.2 * x)
    assert m["val/range_ratio"] == pytest.approx(0.2, rel=1e-5)
    assert m["val/rms_ratio"] == pytest.approx(0.2, rel=1e-5)
    assert m["val/snr_db"] == pytest.approx(10 * math.log10(1 / 0.64), abs=1e-3)  # 1.94 dB
    assert m["val/noise_power"] == pytest.approx(0.64 * m["val/signal_power"], rel=1e-5)


def test_matching_level_of_an_uncorrelated_output_gives_minus_3_db():
    x = sine(f=300)
    y = sine(f=1700)  # same power, uncorrelated
    assert snr_db(x, y) == pytest.approx(-3.01, abs=0.05)


def test_codebook_usage():
    assert perplexity(torch.arange(16), 16) == pytest.approx(16)
    assert perplexity(torch.zeros(10, dtype=torch.long), 16) == pytest.approx(1)
    codes = torch.zeros(2, 2, 8, dtype=torch.long)
    codes[:, 0] = torch.arange(8)  # stage 0 uses 8 codes evenly, stage 1 one code
    m = codebook_metrics(codes, 16)
    assert m["vq/perplexity"] == pytest.approx((8 + 1) / 2)
    assert m["vq/dead_fraction"] == pytest.approx(1 - 9 / 32)


@pytest.mark.parametrize("rate", [16000, 8000, 22050])  # wideband, narrowband, resampled to 16 kHz
def test_pesq_and_stoi_top_out_on_a_copy_and_fall_with_noise(rate):
    x = speechlike(3.0, rate).astype("float32")
    noisy = x + 0.05 * torch.randn(len(x), generator=torch.Generator().manual_seed(0)).numpy()
    same, worse = perceptual(x, x.copy(), rate), perceptual(x, noisy, rate)
    assert same["pesq"] > 4.4 and same["stoi"] > 0.99
    assert worse["pesq"] < same["pesq"] - 1 and worse["stoi"] < same["stoi"]


def test_pesq_that_finds_no_speech_is_nan_not_an_error():
    silence = torch.zeros(16000).numpy()
    assert math.isnan(perceptual(silence, silence, 16000)["pesq"])


@pytest.mark.slow  # trains with a discriminator: 18-27 s on the loaded 2-core machine
def test_the_debug_block_shows_every_trained_term_the_discriminators_too(audio_dir, tmp_path, capsys):
    import train_codec

    from .test_cli import tiny_flags

    flags = tiny_flags(
        num_epochs=1, max_steps_per_epoch=2, adv_weight=1.0, discriminators="mpd", disc_channels=4
    )
    base = ["--data_dir", str(audio_dir), "--cache_dir", str(tmp_path / "cache"), "--tracking_uri"]
    base += [str(tmp_path / "mlflow.db"), "--checkpoint_dir", str(tmp_path / "ckpt")]
    assert train_codec.main([*base, *flags]) == 0
    block = capsys.readouterr().out.split("  SI-SDR", 1)[1]
    lines = {line.split()[0]: line for line in block.splitlines() if line.startswith("  ")}
    assert lines["rec/l1"].endswith(" x 1") and lines["amp/rms"].endswith(" x 10")  # trained, with weights
    assert {"adv/gen", "adv/feat", "disc/total", "disc/mpd"} <= lines.keys()  # the adversarial terms, on
    assert "rec/mel" not in lines and "rec/mel " in lines["logged"]  # weight 0: logged only, on one line
