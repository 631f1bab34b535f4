"""What a finding is and the thresholds the rules hold a run to (each with its reason, here and only here),
and how evidence is read from a History and written: which metric, which epochs, against what."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from tune_codec.doctor.series import History


@dataclass(frozen=True)
class Thresholds:
    # The level and codebook rules judge the epochs after these, as the search's stop rules do: an
    # untrained decoder's level swings for a few epochs (the hand fix's SI-SDR sits near -50 dB for 6)
    grace_epochs: int = 3
    # The stop rules' band for max|out| / max|in| (tune_codec.search.stopping.StopRules): 6 dB either side
    quiet: float = 0.5
    loud: float = 2.0
    # SI-SDR below this with energy in the output: under 1% of the output's energy follows the input
    fixed_si_sdr_db: float = -20.0
    # RMS ratio from which the output counts as carrying energy (a quarter of the input's RMS, -12 dB): a
    # near-silent output's SI-SDR says nothing of a pattern
    fixed_level: float = 0.25
    # An output a x + e of the input x with SI-SDR at least 6 dB (|e|^2 at most a^2 |x|^2 / 4) and an RMS
    # ratio at most 1.5 (so |a| <= 1.5) scores SNR over 0 dB unless a < 0 (on the input's side, SNR <= 0 dB
    # needs a >= 1.6): there SNR <= 0 dB means the input upside down (an exact inverted copy: -6.02 dB)
    inverted_si_sdr_db: float = 6.0
    inverted_rms: float = 1.5
    # PESQ-WB from which the output sounds right (Opus 6 kbps scores 1.72 on the real-speech corpus), and
    # the SI-SDR under which its waveform is off there (the error at least half the signal; Opus 6 kbps
    # keeps 4 dB, Opus 8 kbps 10.7 dB at PESQ 2.6)
    sounds_pesq: float = 2.0
    phase_si_sdr_db: float = 3.0
    # SI-SDR rising slower than this (dB an epoch, fitted over `window`) is stuck: the PyTorch-bias trap's
    # wanders +-4 dB around -35 dB (fitted slopes up to 2), healthy runs climb out of their first epochs'
    # -30 to -50 dB at 3.5 (the hand fix, epochs 8-16) to 10 dB an epoch
    stuck_db: float = 3.0
    # More than this share of the codes unused on validation, or fewer codes in use (perplexity, effectively)
    # than min_perplexity (the stop rules'): a collapsed codebook. Dead-code restart keeps it near 0
    dead_fraction: float = 0.5
    min_perplexity: float = 2.0
    # An epoch's mean training loss this many times the epoch's before (the first's: the second's): steps
    # blew up, even where the loss came back after (a steep but healthy first epoch is 2-4x the second)
    spike: float = 10.0
    # The last epoch's training loss this many times the run's lowest before it: the loss is climbing back
    rise: float = 2.0
    # A learning rate below this moves Adam's weights 10x slower than the default 1e-3 each step
    low_lr: float = 1e-4
    # The reconstruction error (loss/rec/l1; pasted text: the loss) falling less than this share over a
    # run of `window` epochs or more: it barely moves (the tests' tiny codec on the demo corpus: healthy,
    # 45% in 5 epochs, the seed's failure 13%; in 3 epochs a healthy run may not have fallen 30% yet)
    slow_fall: float = 0.3
    # SNR at or below this is no better than silence, which scores 0 dB
    silence_db: float = 0.0
    # Adversarial hinge loss adv/gen at or above this: the discriminators judge the output fake beyond their
    # margin (logit <= -1); least squares: 0.9, the output judged fake (near 0) with certainty
    hinge_wins: float = 2.0
    lsq_wins: float = 0.9
    # A discriminator's loss at the best a constant guess scores (hinge 2, least squares 0.5 each), within
    # this share: it tells input from output no better than chance
    chance_share: float = 0.95
    # The validation metric this far below its best (mean of the last `window_after` epochs) while the
    # training loss kept falling: epoch-to-epoch noise on the demo corpus is about +-0.5 dB
    worse_db: float = 1.0
    window_after: int = 3
    # Epochs a trend is fitted over
    window: int = 5
    # What doubling a healthy run's epochs must gain for it to be still learning: 0.5 dB of SNR or SI-SDR
    # (the demo corpus's epoch-to-epoch noise), 0.1 PESQ-WB, 0.01 STOI. The freq codec on real speech gains
    # about 0.3 PESQ and 0.7-1 dB SI-SDR with each doubling from 16 to 246 epochs
    more_db: float = 0.5
    more_pesq: float = 0.1
    more_stoi: float = 0.01


THRESHOLDS = Thresholds()


class Finding(NamedTuple):
    name: str  # one of the names below
    evidence: str  # which metric, which epochs, against which threshold
    mechanism: str  # why, in a sentence or two
    prescription: str  # what to change
    fields: dict[str, str]  # config field -> "up", "down" or "around": what a search should explore
    metric: str = "val/snr_db"  # what that search should rank trials on


DIVERGING = "loss non-finite or diverging"
LOUD = "output too loud or exploding"
FIXED = "fixed pattern: level right, not the input"
INVERTED = "output inverted: the input upside down"
PHASE = "sounds right, waveform off"
QUIET = "output too quiet"
SLOW = "learning too slowly"
CODEBOOK = "codebook collapse"
DISC_WINS = "discriminator winning outright"
DISC_LOSES = "discriminator losing outright"
WORSENING = "validation worsening while training improves"
MORE_STEPS = "healthy, needs more steps"
LEVELLED = "healthy, levelled off"


def g(value: float) -> str:
    return f"{value:.3g}"


def where(h: History, epochs: list[int]) -> str:
    """'epoch 4', 'epochs 4-6' or 'epochs 2, 5' ('block' for pasted blocks without epochs)."""
    if len(epochs) == 1:
        return f"{h.unit} {epochs[0]}"
    if epochs == list(range(epochs[0], epochs[-1] + 1)):
        return f"{h.unit}s {epochs[0]}-{epochs[-1]}"
    return f"{h.unit}s {', '.join(map(str, epochs))}"


def quote(h: History, key: str, points: list[tuple[int, float]]) -> str:
    """'val/range_ratio 0.012 to 0.014 at epochs 4-6'."""
    values = [v for _, v in points]
    low, high = min(values), max(values)
    span = g(low) if g(low) == g(high) else f"{g(low)} to {g(high)}"
    return f"{key} {span} at {where(h, [e for e, _ in points])}"


def judged(h: History, key: str, t: Thresholds) -> tuple[list[tuple[int, float]], str]:
    """The points the level and codebook rules judge, and a caveat: those after the grace epochs (pasted
    blocks without epochs: all); where every epoch is within the grace, the last, saying so."""
    points = h.points(key)
    if not points or h.unit != "epoch":
        return points, ""
    after = [p for p in points if p[0] > t.grace_epochs]
    if after:
        return after, ""
    return points[-1:], f"; epoch {points[-1][0]} is within the first {t.grace_epochs}, where levels settle"


def persistent(points: list[tuple[int, float]], bad) -> list[tuple[int, float]]:
    """The bad points, when the last one is bad or at least half are; else none (a passing swing)."""
    found = [p for p in points if bad(p[1])]
    return found if found and (bad(points[-1][1]) or 2 * len(found) >= len(points)) else []


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y); 0 for fewer than 2 points."""
    if len(points) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0
