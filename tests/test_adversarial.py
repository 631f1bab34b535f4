"""The field's training terms: discriminators and their losses, the balancer, quantizer dropout, random
crops, gain, the learning-rate schedule; each trains, logs its name and resumes exactly."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tune_codec import run
from tune_codec.codec.balancer import Balancer
from tune_codec.codec.discriminators import (
    PERIODS,
    Adversary,
    Discriminators,
    Judgement,
    discriminator_losses,
    generator_loss,
)
from tune_codec.codec.quantize import ResidualVQ
from tune_codec.config import make_config
from tune_codec.data.segments import CodecData, Segments
from tune_codec.errors import ConfigError
from tune_codec.report import report
from tune_codec.report.report import BY_CODEBOOKS
from tune_codec.training.checkpoint import load_state
from tune_codec.training.schedule import lr_factor
from tune_codec.training.train import train

from .conftest import TINY, as_segments, runs_of, space_file, tones

GAN = dict(adv_weight=1.0, feat_weight=1.0, disc_channels=2)


def test_each_discriminator_judges_the_audio_and_a_weight_of_zero_builds_none():
    both = make_config({**TINY, **GAN})
    nets = Discriminators(both)
    assert nets.kinds.count("mpd") == len(PERIODS) and nets.kinds.count("msstft") >= 1
    x = torch.randn(3, 1, both.segment_samples) * 0.3
    for judged in nets(x):
        assert judged.logits.shape[0] == 3 and torch.isfinite(judged.logits).all() and judged.features
    assert Discriminators(replace(both, discriminators="mpd")).kinds == ["mpd"] * len(PERIODS)
    assert make_config(TINY).adversarial is False and both.adversarial
    with pytest.raises(ConfigError, match="discriminators='mpd,gan' must be msstft or mpd"):
        make_config({"discriminators": "mpd,gan"})


def judged(value: float) -> list[Judgement]:
    return [Judgement(torch.full((2, 1, 4), value), [torch.full((2, 3), value)])]


@pytest.mark.parametrize(
    "kind, real, fake, disc, gen_real, gen_fake",
    [
        ("hinge", 1.5, -1.5, 0.0, 0.0, 2.5),
        ("lsq", 1.0, 0.0, 0.0, 0.0, 1.0),
        ("hinge", 0.0, 0.0, 2.0, 1.0, 1.0),
    ],
)
def test_the_discriminator_and_generator_objectives(kind, real, fake, disc, gen_real, gen_fake):
    (loss,) = discriminator_losses(judged(real), judged(fake), kind)
    assert loss.item() == pytest.approx(disc)
    # the codec gains nothing once its output is judged as real as the input, and loses when judged fake
    assert generator_loss(judged(real), kind).item() == pytest.approx(gen_real)
    assert generator_loss(judged(fake), kind).item() == pytest.approx(gen_fake)


def test_feature_matching_is_zero_on_the_input_and_its_gradient_reaches_the_output_only():
    config = make_config({**TINY, **GAN})
    adversary = Adversary(config, torch.device("cpu"))
    x = torch.randn(2, 1, config.segment_samples) * 0.3
    assert adversary.losses(x, x.clone(), False)["adv/feat"].item() == pytest.approx(0.0)
    y = (0.5 * x).requires_grad_()
    terms = adversary.losses(x, y, False)
    (terms["adv/gen"] + terms["adv/feat"]).backward()
    assert terms["adv/feat"] > 0 and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in adversary.nets.parameters())


def test_a_discriminator_step_lowers_its_objective():
    config = make_config({**TINY, **GAN, "discriminators": "mpd"})
    adversary = Adversary(config, torch.device("cpu"))
    x = torch.from_numpy(tones(8, config.segment_samples, 8000, 0))[:, None]
    y = 0.3 * torch.randn_like(x)
    first = adversary.update(x, y, 3e-3, False)["disc/total"]
    for _ in range(20):
        last = adversary.update(x, y, 3e-3, False)
    assert last["disc/total"] < first and set(last) == {"disc/total", "disc/mpd"}


def test_discriminators_run_under_bf16_autocast_and_give_float32_losses():
    config = make_config({**TINY, **GAN})
    adversary = Adversary(config, torch.device("cpu"))
    x = torch.randn(2, 1, config.segment_samples) * 0.3
    y = (0.5 * x).requires_grad_()
    logged = adversary.update(x, y, 1e-3, True)  # CPU autocast here; CUDA's the same code path
    terms = adversary.losses(x, y, True)
    assert all(t.dtype == torch.float32 and torch.isfinite(t) for t in [*logged.values(), *terms.values()])


def test_the_balancer_gives_each_loss_its_share_whatever_its_scale():
    def balanced_grad(scale: float) -> torch.Tensor:
        y = torch.linspace(-1, 1, 64).reshape(2, 1, 32).requires_grad_()
        losses = {"a": scale * (y - 1).pow(2).mean(), "b": y.abs().mean() / scale}
        Balancer().backward(losses, {"a": 2.0, "b": 1.0}, y, None)
        return y.grad

    grad = balanced_grad(1.0)
    assert torch.allclose(grad, balanced_grad(1000.0), atol=1e-6)  # 10^6 apart in raw scale, same result
    y = torch.linspace(-1, 1, 64).reshape(2, 1, 32)
    ga, gb = 2 * (y - 1) / 64, torch.sign(y) / 64  # each loss's own gradient
    norm = lambda g: g.flatten(1).norm(dim=1).mean()  # noqa: E731
    assert torch.allclose(grad, 2 / 3 * ga / norm(ga) + 1 / 3 * gb / norm(gb), atol=1e-6)


def test_the_balancer_keeps_a_moving_average_of_the_norms():
    balancer = Balancer(decay=0.5)
    assert balancer.average_norms({"a": 4.0}) == {"a": 4.0}  # bias-corrected: the first is itself
    assert balancer.average_norms({"a": 1.0}) == {"a": pytest.approx((0.5 * 4 + 1) / 1.5)}
    again = Balancer(decay=0.5)
    again.load_state_dict(balancer.state_dict())
    assert again.average_norms({"a": 2.0}) == balancer.average_norms({"a": 2.0})


def test_quantizer_dropout_decodes_each_item_from_its_own_number_of_stages():
    rvq = ResidualVQ(8, 3, 16, kmeans_iters=2)
    z = torch.randn(4, 8, 10)
    rvq.train()
    rvq(z)  # k-means init
    rvq.eval()
    out = rvq(z, torch.tensor([1, 2, 3, 1]))
    full = rvq(z)
    assert torch.equal(out.codes, full.codes)  # the codes do not depend on how many are decoded
    for b, k in enumerate([1, 2, 3, 1]):
        assert torch.allclose(out.quantized[b], rvq.decode(full.codes[b : b + 1, :k])[0], atol=1e-6)


def test_lr_schedule_warms_up_then_decays_to_its_final_share():
    c = make_config({"lr_warmup_steps": 10, "lr_decay": "cosine", "lr_final": 0.1})
    assert [lr_factor(c, s, 111) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(c, 60, 111) == pytest.approx(0.55) and lr_factor(c, 110, 111) == pytest.approx(0.1)
    e = replace(c, lr_decay="exponential")
    assert lr_factor(e, 60, 111) == pytest.approx(math.sqrt(0.1)) and lr_factor(e, 110, 111) == pytest.approx(
        0.1
    )
    assert lr_factor(replace(c, lr_decay="none"), 110, 111) == 1.0


def test_random_crops_stay_inside_their_file(tmp_path):
    x = tones(4, 100, 8000, 0)
    segments = as_segments(x, tmp_path / "a.i16")
    flat = segments.read().ravel()
    # two files of two segments each: starts 0, 100 in the first (0..200), 200, 300 in the second
    crops = Segments(segments.path, segments.starts, segments.scales, segments.dcs, 100,
                     np.array([0, 0, 200, 200]), np.array([100, 100, 300, 300]))  # fmt: skip
    moved = crops.read(np.arange(4), np.array([-30, -30, 250, -250]))
    for row, start in zip(moved, (0, 70, 300, 200), strict=True):  # clipped, moved, clipped, clipped
        assert np.allclose(row, flat[start : start + 100], atol=1e-4)
    assert np.array_equal(crops.read(np.arange(4)), segments.read())  # no shift: the fixed cuts


def test_the_split_gives_each_segment_its_files_room(audio_dir, tmp_path):
    from tune_codec.data.segments import load_data

    data = load_data(audio_dir, make_config({"sample_rate": 8000, "segment_seconds": 0.25}), tmp_path / "c")
    for part in (data.train, data.valid):
        assert (part.lo <= part.starts).all() and (part.starts <= part.hi).all()
        assert (part.hi - part.lo + part.length == 8000).all()  # every file is 1 s at 8 kHz


def crop_data(tmp_path) -> CodecData:
    """tiny_data whose segments may be cropped anywhere in their 64- and 16-segment 'files'."""
    L = make_config(TINY).segment_samples

    def part(n, seed):
        s = as_segments(tones(n, L, 8000, seed), tmp_path / f"{seed}.i16")
        return Segments(s.path, s.starts, s.scales, s.dcs, L, np.zeros(n, np.int64), np.full(n, (n - 1) * L))

    return CodecData(part(64, 0), part(16, 1), 8000, ["train.wav"], ["valid.wav"])


EVERYTHING = dict(
    **GAN,
    stft_weight=1.0,
    balancer=True,
    quantizer_dropout=0.5,
    random_crop=True,
    gain_db=6.0,
    lr_warmup_steps=4,
    lr_decay="cosine",
    adv_start_epoch=2,
    adam_beta1=0.5,
    adam_beta2=0.9,
)


def test_every_term_trains_logs_its_name_and_resumes_exactly(tmp_path):
    config = make_config({**TINY, **EVERYTHING})
    data = crop_data(tmp_path)
    reports = []
    train(config, data, lambda m, d: reports.append(m), checkpoint_dir=tmp_path / "a", quiet=True)
    first, later = reports[0], reports[-1]
    assert not any(k.startswith(("disc/", "loss/adv/")) for k in first)  # before adv_start_epoch
    assert {"disc/total", "disc/msstft", "disc/mpd", "loss/adv/gen", "loss/adv/feat", "loss/rec/stft"} <= set(
        later
    )
    assert {"balancer/rec/l1", "balancer/adv/feat", "val/codebooks_1/snr_db", "val/codebooks_1/stoi"} <= set(
        later
    )
    assert all(math.isfinite(v) for v in later.values())
    assert later["opt/lr"] == pytest.approx(config.learning_rate * config.lr_final)

    class Killed(Exception):
        pass

    def kill_after_one(metrics, _):
        if metrics["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):  # a run killed after its first epoch, then resumed
        train(config, data, kill_after_one, checkpoint_dir=tmp_path / "b", quiet=True)
    resumed = train(config, data, checkpoint_dir=tmp_path / "b", resume_from=tmp_path / "b", quiet=True)
    a, b = load_state(tmp_path / "a"), load_state(tmp_path / "b")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for name, tensor in a["adversary"]["nets"].items():
        assert torch.equal(tensor, b["adversary"]["nets"][name]), name
    moments = a["adversary"]["optimizer"]["state"], b["adversary"]["optimizer"]["state"]
    assert all(torch.equal(moments[0][i]["exp_avg"], moments[1][i]["exp_avg"]) for i in moments[0])
    assert a["balancer"] == b["balancer"] and resumed["val/snr_db"] == later["val/snr_db"]


def test_a_search_of_the_new_terms_trains_discriminators_and_reports_each_bitrate(
    ray_local, search_env, tmp_path
):
    flags, client = search_env
    space = space_file(
        tmp_path,
        "terms",
        trials=2,
        config={"num_epochs": 2, "quantizer_dropout": 0.5, "feat_weight": 1.0, "disc_channels": 2},
        stop={"grace_epochs": 2},
        search={"adv_weight": {"categorical": [0.0, 1.0]}, "balancer": {"categorical": [False, True]}},
        start=[{"adv_weight": 1.0, "balancer": True}],
    )
    assert run.main(["--space", str(space), *flags]) == 0
    (parent,), children = runs_of(client)
    assert len(children) == 2
    for child in children:  # feat_weight 1 builds the discriminators in every trial
        assert {"disc/total", "disc/msstft", "disc/mpd", "loss/adv/feat", "val/codebooks_1/snr_db"} <= set(
            child.data.metrics
        )
    out = tmp_path / "report"
    assert (
        report.main(["terms", "--tracking-uri", flags[flags.index("--tracking-uri") + 1], "--out", str(out)])
        == 0
    )
    text = (out / "report.txt").read_text()
    table = text.split(BY_CODEBOOKS)[1].splitlines()
    assert (
        "codebooks" in table[1] and table[2].split()[:2] == ["1", "8"] and table[3].split()[:2] == ["2", "16"]
    )
