"""model: freq (the frequency-domain codec) and model: package.module:factory (a user's codec): each
keeps what a SEANet codec has, and a config naming what does not exist fails before training."""

import math
import re
from dataclasses import replace

import pytest
import torch
import yaml

import train_codec
from tune_codec.codec.build import build_codec
from tune_codec.codec.freq import FreqCodec, Spectra
from tune_codec.config import MODEL_SIZES, for_model, make_config
from tune_codec.errors import ConfigError, SpaceError
from tune_codec.evaluation import codes
from tune_codec.search.space import parse_space
from tune_codec.training.checkpoint import load_codec, load_state
from tune_codec.training.train import train

from .conftest import TINY, write_speechlike
from .test_adversarial import EVERYTHING, crop_data

# TINY less seanet's channels: hop 4, a window of 4 hops
FREQ = {
    **{k: v for k, v in TINY.items() if k not in MODEL_SIZES["seanet"]},
    **{"model": "freq", "freq_width": 8, "freq_depth": 1, "n_fft": 16},
}
USER = "tests.example_codec:build"


@pytest.fixture
def freq_config():
    return make_config(FREQ)


@pytest.mark.parametrize("n_fft, hop, length", [(256, 64, 8000), (128, 64, 640), (15, 5, 50), (16, 4, 256)])
def test_the_stft_gives_a_frame_per_hop_and_its_inverse_gives_the_audio_back(n_fft, hop, length):
    spectra = Spectra(n_fft, hop)
    x = torch.randn(2, 1, length)
    spec = spectra(x)
    assert spec.shape == (2, n_fft // 2 + 1, length // hop)
    torch.testing.assert_close(spectra.inverse(spec), x, atol=2e-6, rtol=0)


def test_output_shape_equals_input_shape_and_the_gradient_reaches_the_input_and_every_weight(freq_config):
    torch.manual_seed(0)
    model = FreqCodec(freq_config)
    x = (0.1 * torch.randn(3, 1, freq_config.segment_samples)).requires_grad_()
    out = model(x)
    assert out.audio.shape == x.shape
    assert out.codes.shape == (3, freq_config.n_codebooks, freq_config.segment_samples // freq_config.hop)
    (out.audio.square().mean() + out.commit_loss).backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_decoding_the_codes_reproduces_the_quantized_output_at_every_number_of_codebooks(freq_config):
    torch.manual_seed(0)
    model = build_codec(freq_config)
    x = 0.1 * torch.randn(2, 1, freq_config.segment_samples)
    model.train()(x)  # initialise the codebooks
    model.eval()
    with torch.no_grad():
        codes_ = model.encode(x)
        torch.testing.assert_close(model.decode(codes_), model(x).audio)
        torch.testing.assert_close(model.decode(codes_[:, :1]), model(x, 1).audio)


def test_bf16_autocast_keeps_the_transforms_in_float32(freq_config):
    torch.manual_seed(0)
    model = FreqCodec(freq_config)
    x = 0.1 * torch.randn(2, 1, freq_config.segment_samples)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.audio.dtype == torch.float32 and torch.isfinite(out.audio).all()
    assert model.encoder.spectra(x).dtype == torch.complex64


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model": "wavenet"}, "model='wavenet' must be seanet, freq, or package.module:factory"),
        ({"model": "freq", "channels": 32}, "channels=32 is a size field of model seanet, not of freq"),
        ({"freq_depth": 2}, "freq_depth=2 is a size field of model freq, not of seanet"),
        ({"model": "freq", "n_fft": 100}, "n_fft=100 must be a multiple of the hop (64, the product"),
        ({"model": "freq", "n_fft": 64}, "n_fft=64 must be a multiple of the hop (64"),
        ({"model": "nowhere.codec:build"}, "model='nowhere.codec:build': cannot import nowhere.codec"),
        ({"model": "tests.example_codec:nothing"}, "tests.example_codec has no callable nothing"),
    ],
)
def test_a_model_or_size_that_does_not_exist_is_one_line_exit_2_before_training(
    changes, message, tmp_path, capsys
):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(changes)
    flags = [x for k, v in changes.items() for x in (f"--{k}", str(v))]
    argv = ["--data_dir", str(tmp_path / "none"), "--checkpoint_dir", str(tmp_path / "c"), *flags]
    assert train_codec.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "c").exists()


@pytest.mark.slow  # about 15-25 s on 2 idle cores
def test_a_freq_codec_trains_with_every_term_and_resumes_exactly(tmp_path):
    config = make_config({**FREQ, **EVERYTHING})
    data = crop_data(tmp_path)
    reports = []
    train(config, data, lambda m, d: reports.append(m), checkpoint_dir=tmp_path / "a", quiet=True)
    assert all(math.isfinite(v) for v in reports[-1].values())
    assert {"disc/mpd", "loss/adv/feat", "balancer/rec/l1", "val/codebooks_1/snr_db"} <= set(reports[-1])

    class Killed(Exception):
        pass

    def kill_after_one(metrics, _):
        if metrics["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train(config, data, kill_after_one, checkpoint_dir=tmp_path / "b", quiet=True)
    resumed = train(config, data, checkpoint_dir=tmp_path / "b", resume_from=tmp_path / "b", quiet=True)
    a, b = load_state(tmp_path / "a"), load_state(tmp_path / "b")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert resumed["val/snr_db"] == reports[-1]["val/snr_db"]


@pytest.mark.slow  # about 15-25 s on 2 idle cores
def test_a_freq_codec_learns_and_its_checkpoint_encodes_and_decodes_a_file(
    freq_config, tiny_data, tmp_path, capsys
):
    reports = []
    config = replace(freq_config, num_epochs=4, l1_weight=0.1, mel_weight=1.0)
    train(config, tiny_data, lambda m, d: reports.append(m), checkpoint_dir=tmp_path, quiet=True)
    assert reports[-1]["loss/rec/mel"] < reports[0]["loss/rec/mel"]
    model, saved = load_codec(tmp_path / "best.pt")
    assert saved == config and isinstance(model, FreqCodec)
    wav = write_speechlike(tmp_path / "in.wav", 0.3, 8000)
    best, coded, out = (str(tmp_path / name) for name in ("best.pt", "x.codes", "o.wav"))
    assert codes.main(["encode", best, str(wav), coded]) == 0
    assert codes.main(["decode", best, coded, out]) == 0
    assert "decoded" in capsys.readouterr().out


def test_a_search_of_the_model_checks_each_size_field_on_its_own_model():
    raw = {
        "config": {"channels": 8},  # seanet's, set back to its default in freq's trials
        "search": {
            "model": {"categorical": ["seanet", "freq", USER]},
            "freq_width": {"categorical": [32, 64]},
            "residual_layers": {"int": [1, 2]},
        },
        "start": [{"model": "freq", "freq_width": 64, "residual_layers": 2}],
    }
    space = parse_space(raw)
    assert space.search["model"] == ("categorical", ("seanet", "freq", USER))
    base = space.param_space()
    for proposal in (
        {"model": "freq", "freq_width": 64, "residual_layers": 2},
        {"model": "seanet", "freq_width": 64, "residual_layers": 2},
        {"model": USER, "freq_width": 64, "residual_layers": 2},
    ):
        config = make_config({**base, **for_model(proposal)})  # what each trial builds
        assert config.model == proposal["model"]
    assert make_config({**base, **for_model({"model": "freq", "freq_width": 64})}).channels == 16
    raw["search"].pop("model")  # freq_width alone: the search trains only seanet
    with pytest.raises(SpaceError, match="search.freq_width: a size field of model freq, and this search"):
        parse_space(raw)


def test_a_users_codec_trains_checkpoints_and_encodes(tiny_data, tmp_path):
    config = make_config({**TINY, "model": USER, "num_epochs": 4, "quantizer_dropout": 0.5})
    reports = []
    train(config, tiny_data, lambda m, d: reports.append(m), checkpoint_dir=tmp_path, quiet=True)
    assert reports[-1]["loss/rec/l1"] < reports[0]["loss/rec/l1"] and "val/codebooks_1/snr_db" in reports[-1]
    model, saved = load_codec(tmp_path / "best.pt")
    assert saved.model == USER and type(model).__name__ == "FrameCodec"


@pytest.mark.parametrize(
    "factory, missing",
    [
        ("without_decode", "it has no decode() method"),
        ("half_length", "forward() turned audio of shape (2, 1, 256) into (2, 1, 128)"),
        ("not_a_module", "the factory returned a str, not a torch.nn.Module"),
    ],
)
def test_a_users_codec_that_breaks_the_interface_is_one_line_naming_what_is_missing(
    factory, missing, tmp_path, capsys
):
    config = make_config({**TINY, "model": f"tests.example_codec:{factory}"})
    with pytest.raises(ConfigError) as e:
        build_codec(config)
    assert str(e.value) == f"model={config.model!r} does not follow the codec interface: {missing}"
    flags = ["--checkpoint_dir", str(tmp_path / "c"), "--config", str(tmp_path / "user.yaml")]
    (tmp_path / "user.yaml").write_text(yaml.safe_dump({**TINY, "model": config.model, "strides": [2, 2]}))
    assert train_codec.main(flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and missing in err and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_a_search_trains_a_users_codec_and_both_built_in_models(search_env, tmp_path):
    import subprocess
    import sys

    from .conftest import ENV, SMOKE, runs_of

    flags, client = search_env
    raw = yaml.safe_load(SMOKE.read_text())
    models = [USER, "freq", "seanet"]
    # freq's n_fft fixed under search: (under config: it would be the base seanet's, and an error)
    raw["search"] = {
        "model": {"categorical": models},
        "freq_width": {"categorical": [8, 16]},
        "n_fft": {"fixed": 16},
    }
    raw["start"] = [{"model": m, "freq_width": 8} for m in models]
    space = tmp_path / "models.yaml"
    space.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "tune_codec.run", "--space", str(space), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (parent,), children = runs_of(client)
    assert sorted(c.data.params["model"] for c in children) == sorted(models)
    assert all(c.info.status == "FINISHED" and "val/snr_db" in c.data.metrics for c in children)
