"""The rules: each reads a History (the metrics train() logs) and returns a Finding or None; diagnose()
runs them all, the likeliest cause first."""

from __future__ import annotations

import math

import torch

from tune_codec.codec.discriminators import Discriminators
from tune_codec.config import DEFAULTS, Config
from tune_codec.doctor.findings import (
    CODEBOOK,
    DISC_LOSES,
    DISC_WINS,
    DIVERGING,
    FIXED,
    INVERTED,
    LEVELLED,
    LOUD,
    MORE_STEPS,
    QUIET,
    SLOW,
    THRESHOLDS,
    WORSENING,
    Finding,
    Thresholds,
    g,
    judged,
    persistent,
    quote,
    slope,
    where,
)
from tune_codec.doctor.series import History, non_finite
from tune_codec.doctor.waveform import fixed_pattern, inverted, phase_off
from tune_codec.names import NON_FINITE


def loss_points(h: History) -> list[tuple[int, float]]:
    """loss/total over the epochs that train the same terms as the last: the adversarial terms join the
    total at adv_start_epoch."""
    start = min((e for e, _ in h.points("loss/adv/gen")), default=0)
    return h.points("loss/total", start)


def over(value: float, reference: float, times: float) -> bool:
    """value over `times` x reference, for a loss that may be below 0 (rec/sisdr's is): the distance above
    the reference over (times - 1) x its size, which for a positive reference is value > times x reference."""
    return value - reference > (times - 1) * abs(reference)


def diverging(h: History, t: Thresholds) -> Finding | None:
    lr = h.learning_rate()
    at = f"learning_rate {g(lr)}" if lr else "the learning rate"
    fields, prescription = (
        {"learning_rate": "down"},
        f"lower {at}: search it from 1/300 of it (a third of the default at most) up to it; lr_warmup_steps "
        "eases the first steps; keep grad_clip on. If the learning rate is already low, look for NaN or "
        "silence-only files in the data",
    )
    bad = non_finite(h)
    if bad or NON_FINITE in h.ended:
        listed = ", ".join(f"{k} = {v} at {h.unit} {e}" for k, e, v in bad[:3])
        evidence = "; ".join(part for part in (h.ended if NON_FINITE in h.ended else "", listed) if part)
        mechanism = (
            f"the loss overflowed: with {at} Adam's steps overshoot, each making the next gradient "
            "larger, until a value is no longer a number (train() stops the run there)"
        )
        return Finding(DIVERGING, evidence, mechanism, prescription, fields)
    points = loss_points(h)
    # each epoch beside the one before (the first: the one after); a jump counts though the loss came back
    pairs = [(points[0], points[1]), *zip(points[1:], points[:-1], strict=True)] if len(points) > 1 else []
    spikes = [(p, before) for p, before in pairs if over(p[1], before[1], t.spike)]
    evidence = ""
    if spikes:
        (e, v), before = max(spikes, key=lambda pair: pair[0][1])
        evidence = (
            f"loss/total {g(v)} at {h.unit} {e}, over {t.spike:g}x the {g(before[1])} of {h.unit} {before[0]}"
        )
    elif len(points) >= 3:
        (low_e, low), (last_e, last) = min(points[:-1], key=lambda p: p[1]), points[-1]
        if over(last, low, t.rise):
            evidence = (
                f"loss/total rose from {g(low)} at {h.unit} {low_e} to {g(last)} at {h.unit} {last_e} "
                f"(over {t.rise:g}x its lowest)"
            )
    if not evidence:
        return None
    mechanism = (
        f"with {at} Adam's steps overshoot: every weight moves about the learning rate a step whatever the "
        "gradient (grad_clip bounds the gradient, not the step), so the loss jumps by orders of magnitude"
    )
    return Finding(DIVERGING, evidence, mechanism, prescription, fields)


def too_loud(h: History, t: Thresholds) -> Finding | None:
    parts, caveats = [], ""
    for key in ("val/range_ratio", "val/rms_ratio"):
        points, caveat = judged(h, key, t)
        if loud := persistent(points, lambda v: v > t.loud):
            parts.append(f"{quote(h, key, loud)} (above {t.loud:g})")
            caveats = caveat
    if not parts:
        return None
    return Finding(
        LOUD,
        "; ".join(parts) + caveats,
        "the decoder's gain overshoots the input's: usually steps too large for the model, the level "
        "swinging with the loss from epoch to epoch, or amplitude weights pulling harder than the "
        "reconstruction",
        "lower the learning rate (search it down from the run's); keep grad_clip on",
        {"learning_rate": "down"},
    )


def too_quiet(h: History, t: Thresholds) -> Finding | None:
    points, caveat = judged(h, "val/range_ratio", t)
    quiet = persistent(points, lambda v: v < t.quiet)
    if not quiet:
        return None
    at = {e for e, _ in quiet}
    peaks = [h.series.get(k, {}).get(quiet[-1][0]) for k in ("val/out_range", "val/in_range")]
    also = [f"output peak {g(peaks[0])} to the input's {g(peaks[1])}"] if None not in peaks else []
    also += [
        quote(h, key, [p for p in h.points(key) if p[0] in at])
        for key in ("val/rms_ratio", "val/snr_db")
        if any(p[0] in at for p in h.points(key))
    ]
    c = h.config
    if c and c.rms_weight == 0 and c.peak_weight == 0:
        cause = (
            "this run trains no amplitude term (rms_weight 0, peak_weight 0), so nothing pulls the level up"
        )
    elif c:
        cause = f"its amplitude terms (rms_weight {g(c.rms_weight)}, peak_weight {g(c.peak_weight)}) are weak"
    else:
        cause = "unless an amplitude term (RMS or peak matching) pulls the level up, it stays there"
    return Finding(
        QUIET,
        f"{quote(h, 'val/range_ratio', quiet)} (below {t.quiet:g})"
        + "".join(f"; {part}" for part in also)
        + (" (silence scores 0 dB)" if also and also[-1].startswith("val/snr_db") else "")
        + caveat,
        "L1 and the codebooks' commitment pull the output toward 0 wherever the decoder is unsure (an "
        f"untrained decoder's best guess is silence), and {cause}: a quiet output scores about 0 dB SNR",
        "raise rms_weight and peak_weight (the hand fix: rms 10, peak 5; the amplitude search's best: rms "
        "2.9, peak 0.56); if the run also learns too slowly, raise the learning rate",
        {"rms_weight": "up", "peak_weight": "up"},
    )


def too_slow(h: History, t: Thresholds, faults: list[Finding]) -> Finding | None:
    if any(f.name in (DIVERGING, LOUD, INVERTED) for f in faults):
        return None  # steps too large, not too small; or an inverted output, which L1 cannot reduce
    # the reconstruction error, unweighted (the adversarial terms of the total need not fall); pasted
    # text has the total only
    key = "loss/rec/l1" if "loss/rec/l1" in h.series else "loss/total"
    lr, points = h.learning_rate(), h.points(key)
    fall = 1 - points[-1][1] / points[0][1] if len(points) >= t.window and points[0][1] > 0 else None
    low_lr = lr is not None and lr < t.low_lr
    snr = h.last("val/snr_db")
    unhealthy = any(f.name in (QUIET, FIXED) for f in faults) or (snr is not None and snr <= t.silence_db)
    if not unhealthy or not (low_lr or (fall is not None and fall < t.slow_fall)):
        return None
    parts = []
    if fall is not None:
        parts.append(
            f"{key} fell {100 * fall:.1f}% over {h.unit}s {points[0][0]}-{points[-1][0]} "
            f"({g(points[0][1])} to {g(points[-1][1])}; under {100 * t.slow_fall:g}%)"
        )
    if low_lr:
        under = DEFAULTS.learning_rate / lr
        parts.append(f"learning_rate {g(lr)} (below {g(t.low_lr)}, {g(under)}x under the default)")
    return Finding(
        SLOW,
        "; ".join(parts) + f". {needed(h, t)}",
        "each step moves the weights too little: Adam moves every weight about the learning rate a step, "
        "so the run spends its epochs near where it started"
        + (
            f"; at {g(lr)} the change the default {g(DEFAULTS.learning_rate)} makes in one step takes "
            f"{g(DEFAULTS.learning_rate / lr)} steps"
            if low_lr
            else ""
        ),
        "raise learning_rate: search it from the run's up to 300x it (the default is 1e-3)",
        {"learning_rate": "up"},
    )


def needed(h: History, t: Thresholds) -> str:
    """How many more epochs the trend would take: the range ratio to reach the healthy band when the output
    is quiet, else the training loss to halve; fitted as exponential growth or decay over the run."""
    ratio = h.points("val/range_ratio")
    if ratio and ratio[-1][1] < t.quiet and len(ratio) >= 2 and all(v > 0 for _, v in ratio):
        rate = slope([(e, math.log(v)) for e, v in ratio])
        pace = f"val/range_ratio {'grows' if rate > 0 else 'changes'} {g(math.exp(rate))}x an {h.unit}"
        if rate <= 0:
            return f"{pace}: at this rate it never reaches {t.quiet:g}"
        return f"{pace}: about {math.ceil(math.log(t.quiet / ratio[-1][1]) / rate)} more to reach {t.quiet:g}"
    loss = h.points("loss/total")
    if len(loss) >= 2 and all(v > 0 for _, v in loss):
        rate = slope([(e, math.log(v)) for e, v in loss])
        if rate < 0:
            more = math.ceil(math.log(2) / -rate)
            return f"loss/total changes {g(math.exp(rate))}x an {h.unit}: it halves in about {more} more"
    return "No trend to extrapolate from"


def codebook(h: History, t: Thresholds) -> Finding | None:
    parts, caveats = [], ""
    rules = (("vq/dead_fraction", lambda v: v > t.dead_fraction, f"above {t.dead_fraction:g}"),
             ("vq/perplexity", lambda v: v < t.min_perplexity, f"below {t.min_perplexity:g}"))  # fmt: skip
    for key, bad, rule in rules:
        points, caveat = judged(h, key, t)
        if found := persistent(points, bad):
            parts.append(f"{quote(h, key, found)} ({rule})")
            caveats = caveat
    if not parts:
        return None
    c = h.config
    restart = c is not None and c.dead_code_threshold == 0
    return Finding(
        CODEBOOK,
        "; ".join(parts) + (f" of {c.codebook_size} codes a stage" if c else "") + caveats,
        "codes no encoder output lands near get no EMA update and never move, so they stay unused and "
        "the codes carry fewer bits than the bitrate pays for"
        + (
            "; dead-code restart is off (dead_code_threshold 0), so nothing brings them back"
            if restart
            else ""
        ),
        "restart unused codes (dead_code_threshold 1 or more: 40-90% dead codes without, about 0% with, "
        "vector-quantize-pytorch issue 205) and try a smaller codebook_size",
        {"dead_code_threshold": "up", "codebook_size": "down"} if restart else {"codebook_size": "down"},
    )


def chance(config: Config) -> float:
    """disc/total of discriminators that each output a constant, the best such a guess scores: hinge 2,
    least squares 0.5, times how many discriminators the config builds."""
    with torch.device("meta"):  # counts the networks without building their weights
        nets = len(Discriminators(config).nets)
    return nets * (2.0 if config.adv_loss == "hinge" else 0.5)


def discriminator(h: History, t: Thresholds) -> Finding | None:
    c = h.config
    metric = "val/pesq" if c and c.perceptual_segments else "val/si_sdr_db"
    wins = t.lsq_wins if c and c.adv_loss == "lsq" else t.hinge_wins
    gen, _ = judged(h, "loss/adv/gen", t)
    if winning := persistent(gen, lambda v: v >= wins):
        return Finding(
            DISC_WINS,
            f"{quote(h, 'loss/adv/gen', winning)} (at or above {wins:g}: the output judged fake for sure)",
            "the discriminators tell output from input every time, so their judgement saturates and tells "
            "the decoder only that it is different, not how to sound right",
            "weaken them or give the decoder a gradient that stays useful: smaller disc_channels, feature "
            "matching (feat_weight), a lower adv_weight or a later adv_start_epoch",
            {"disc_channels": "down", "feat_weight": "up", "adv_weight": "down"},
            metric,
        )
    disc, caveat = judged(h, "disc/total", t)
    if c is None or not disc or not c.adversarial:
        return None
    level = chance(c)
    if all(v >= t.chance_share * level for _, v in disc):
        return Finding(
            DISC_LOSES,
            f"{quote(h, 'disc/total', disc)} (at or above {g(t.chance_share * level)}: {t.chance_share:g} of "
            f"{g(level)}, what {c.discriminators} discriminators outputting a constant score){caveat}",
            "the discriminators tell input from output no better than a constant guess: their adversarial "
            "term gives the decoder noise, not a direction",
            "give them capacity or time: wider disc_channels, a lower adv_weight until they learn (or "
            "adv_start_epoch later, once the codec reconstructs)",
            {"disc_channels": "up", "adv_weight": "down"},
            metric,
        )
    return None


def worsening(h: History, t: Thresholds) -> Finding | None:
    key = h.score_metric()
    points, loss = h.points(key), dict(h.points("loss/total"))
    if len(points) < t.window_after + 2:
        return None
    best_e, best = max(points, key=lambda p: p[1])
    after = points[-t.window_after :]
    if best_e >= after[0][0] or best - sum(v for _, v in after) / len(after) < t.worse_db:
        return None  # the best is recent, or the last epochs are within noise of it
    then, now = loss.get(best_e), loss.get(after[-1][0])
    if then is None or now is None or now >= then:
        return None
    below = best - sum(v for _, v in after) / len(after)
    return Finding(
        WORSENING,
        f"{key} best {g(best)} at {h.unit} {best_e}, {quote(h, key, after)} (on average {g(below)} below "
        f"it, over {t.worse_db:g}) while loss/total fell from {g(then)} to {g(now)}",
        "the codec fits what only the training audio has: too little or too uniform training data for the "
        "model's size (or a validation set unlike it). best.pt keeps the best epoch",
        "more and more varied training audio; random_crop and gain_db vary what it sees; weight_decay",
        {"random_crop": "around", "gain_db": "up", "weight_decay": "up"},
        key,
    )


def progress(h: History, t: Thresholds) -> Finding:
    """A run with no fault: still learning or levelled off, by what doubling its epochs would gain. A learning
    curve rises about linearly in ln(epoch): fitted as a + b ln(epoch) over the run's second half, b ln 2 is
    what each doubling gains (with under 3 epochs there, the last epochs' slope times the epochs). It is
    still learning where that gain is worth a doubling and its best epoch is in the second half."""
    key = h.score_metric()
    points = h.points(key)
    recent, half, n = points[-t.window :], points[len(points) // 2 :], points[-1][0]
    if len(half) >= 3 and half[0][0] > 0:
        gain = slope([(math.log(e), v) for e, v in half]) * math.log(2)
        how = f"fitted as a + b ln(epoch) over {where(h, [e for e, _ in half])}"
    else:
        gain, how = slope(recent) * n, f"the slope over {where(h, [e for e, _ in recent])} times {n}"
    unit = " dB" if key.endswith("_db") else ""
    worth = {"val/pesq": t.more_pesq, "val/stoi": t.more_stoi}.get(key, t.more_db)
    estimate = f"{quote(h, key, recent)}. Estimate: {2 * n} {h.unit}s gain about {g(gain)}{unit} more ({how})"
    best_e = max(points, key=lambda p: p[1])[0]
    if gain > worth and best_e >= half[0][0]:
        return Finding(
            MORE_STEPS,
            f"{estimate}, over {worth:g}{unit}; its best at {h.unit} {best_e}",
            "nothing in these metrics is wrong: the codec is still learning when the run ends",
            f"train longer: num_epochs {2 * n} (the search doubles it, the learning rate around the run's)",
            {"num_epochs": "up", "learning_rate": "around"},
            key,
        )
    return Finding(
        LEVELLED,
        f"{estimate}, at most {worth:g}{unit}" + (f"; its best at {h.unit} {best_e}" if gain > worth else ""),
        "nothing in these metrics is wrong, and the score has stopped rising at this size and learning rate",
        "for more, search the loss weights and learning rate around the run's, or a larger model",
        {"learning_rate": "around", "rms_weight": "around", "peak_weight": "around", "l1_weight": "around"},
        key,
    )


def diagnose(h: History, t: Thresholds = THRESHOLDS) -> list[Finding]:
    """Every finding, the likeliest cause first. A diverging loss or an exploding level explains whatever
    else the output does, and a fixed pattern or an inverted output a low SNR, so the level findings
    exclude each other in that order; a run with no fault is judged on whether its score still rises (3
    epochs at least)."""
    found = [f for f in (diverging(h, t), too_loud(h, t)) if f]
    if not found:
        found = next(([f] for rule in (fixed_pattern, inverted, too_quiet) if (f := rule(h, t))), [])
    if slow := too_slow(h, t, found):
        found.append(slow)
    later = [phase_off, codebook, discriminator]
    if not any(f.name == INVERTED for f in found):  # an inverted copy's SNR falls as it sharpens
        later.append(worsening)
    found += [f for f in (rule(h, t) for rule in later) if f]
    if not found and len(h.points(h.score_metric())) >= 3:
        found.append(progress(h, t))
    return found


def headline(findings: list[Finding]) -> str:
    """The findings' names in one cell of a table."""
    return "; ".join(f.name for f in findings) or "-"
