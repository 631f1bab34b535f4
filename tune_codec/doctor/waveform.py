"""The rules that hold the output's waveform against the input's, where its level is right: a pattern the
decoder emits whatever it hears, the input upside down, and an output that sounds right on the wrong
waveform. Each reads a History and returns a Finding or None."""

from __future__ import annotations

from tune_codec.doctor.findings import (
    FIXED,
    INVERTED,
    PHASE,
    Finding,
    Thresholds,
    g,
    judged,
    persistent,
    quote,
    slope,
    where,
)
from tune_codec.doctor.series import History


def fixed_pattern(h: History, t: Thresholds) -> Finding | None:
    points, caveat = judged(h, "val/si_sdr_db", t)
    points = persistent(points, lambda v: v < t.fixed_si_sdr_db)
    rms = h.last("val/rms_ratio")
    if len(points) < (2 if h.unit == "epoch" else 1) or rms is None or rms < t.fixed_level:
        return None  # a pattern is a state that lasts: two epochs after the grace at least
    recent = h.points("val/si_sdr_db")[-t.window :]
    rise = slope(recent)
    if rise >= t.stuck_db:
        return None
    c = h.config
    weights = f" (rms {g(c.rms_weight)}, peak {g(c.peak_weight)}, L1 {g(c.l1_weight)})" if c else ""
    return Finding(
        FIXED,
        f"{quote(h, 'val/si_sdr_db', points)} (below {t.fixed_si_sdr_db:g} dB), rising {g(rise)} dB an "
        f"{h.unit} over {where(h, [e for e, _ in recent])} (under {t.stuck_db:g}), while val/rms_ratio is "
        f"{g(rms)} (at least {t.fixed_level:g}: the output carries energy){caveat}",
        "the output is at a level but not the input: a pattern the decoder emits whatever it hears. The "
        "amplitude losses reward the level whatever the waveform; where the decoder's biases outweigh quiet "
        "speech (PyTorch's default bias init, benchmarks/amplitude_trap.py) or rms/peak outweigh the "
        f"reconstruction{weights}, a fixed pattern at the right level is their cheapest answer",
        "lower rms_weight and peak_weight against l1_weight (the amplitude search's best: rms 2.9, peak "
        "0.56, L1 1.7); a model of your own should start its conv biases at zero (codec/model.py zero_bias)",
        {"rms_weight": "down", "peak_weight": "down", "l1_weight": "up"},
        "val/si_sdr_db",
    )


def beside(h: History, key: str, t: Thresholds, others: tuple[str, ...], bad) -> list[tuple[int, tuple]]:
    """The judged epochs of `key` with the values of `others` there, as (epoch, (key's, *others')), when
    bad(values) holds persistently (see persistent); epochs missing one of the others are left out."""
    series = [h.series.get(k, {}) for k in others]
    points, _ = judged(h, key, t)
    joined = [(e, (v, *(s[e] for s in series))) for e, v in points if all(e in s for s in series)]
    return persistent(joined, bad)


def weak_terms(h: History, *names: str) -> str:
    """' (l1_weight 0.1, sisdr_weight 0)' of the run's config; '' without one."""
    return f" ({', '.join(f'{n} {g(getattr(h.config, n))}' for n in names)})" if h.config else ""


def inverted(h: History, t: Thresholds) -> Finding | None:
    found = beside(
        h,
        "val/snr_db",
        t,
        ("val/si_sdr_db", "val/rms_ratio"),
        lambda v: v[0] <= t.silence_db and v[1] >= t.inverted_si_sdr_db and v[2] <= t.inverted_rms,
    )
    if not found:
        return None
    column = {key: [(e, v[i]) for e, v in found] for i, key in enumerate(("val/snr_db", "val/si_sdr_db"))}
    return Finding(
        INVERTED,
        f"{quote(h, 'val/snr_db', column['val/snr_db'])} (at or below {t.silence_db:g} dB) while "
        f"{quote(h, 'val/si_sdr_db', column['val/si_sdr_db'])} (at least {t.inverted_si_sdr_db:g} dB) at "
        f"val/rms_ratio {t.inverted_rms:g} or under: an output on the input's side would score over 0 dB "
        "there, the input upside down scores -6 dB",
        "SI-SDR, the mel and STFT distances and the RMS and peak terms all score an output upside down "
        "exactly as the input; only the waveform terms tell the sign"
        f"{weak_terms(h, 'l1_weight', 'sisdr_weight')}, so a decoder that starts on the wrong side stays "
        "there",
        "raise sisdr_weight (rec/sisdr scores the input upside down the worst; the CPU tier's freq configs "
        "train it at 1) or l1_weight",
        {"sisdr_weight": "up", "l1_weight": "up"},
    )


def phase_off(h: History, t: Thresholds) -> Finding | None:
    found = beside(
        h,
        "val/pesq",
        t,
        ("val/si_sdr_db",),
        lambda v: v[0] >= t.sounds_pesq and v[1] < t.phase_si_sdr_db,
    )
    if not found:
        return None
    recent = h.points("val/si_sdr_db")[-t.window :]
    trend = f"rising {g(slope(recent))} dB an {h.unit} over {where(h, [e for e, _ in recent])}"
    pesq, si_sdr = ([(e, v[i]) for e, v in found] for i in (0, 1))
    return Finding(
        PHASE,
        f"{quote(h, 'val/pesq', pesq)} (at least {t.sounds_pesq:g}) while "
        f"{quote(h, 'val/si_sdr_db', si_sdr)} (below {t.phase_si_sdr_db:g} dB), {trend}",
        "the mel and STFT distances fit the spectrum's magnitude, which is what the ear and PESQ judge, not "
        "its phase: a decoder that makes its own phase (an iSTFT head) learns the magnitude first, and "
        f"without a waveform term that pulls{weak_terms(h, 'l1_weight', 'sisdr_weight')} its phase drifts "
        "from the input's",
        "raise sisdr_weight: rec/sisdr trains each segment's correlation with the input (cpu-freq-8kbps "
        "trains it at 1: held-out SI-SDR 11.1 dB after 15 CPU-minutes, where the same codec without it had "
        "-1.3 dB)",
        {"sisdr_weight": "up"},
        "val/si_sdr_db",
    )
