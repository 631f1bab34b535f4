"""Debug blocks as a person pastes them -> a History: train_codec.py's block and epoch line, or another
trainer's ("Input  range: [-1.01, 1.01]", "SNR: -0.19 dB"), in any order and spacing, with or without
epoch numbers."""

from __future__ import annotations

import math
import re

from tune_codec.config import Config
from tune_codec.doctor.series import History
from tune_codec.errors import DoctorError

NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?))"
SEP = r"\s*(?:[:=]\s*)?"  # "SNR: -0.19", "SNR = -0.19", "SNR -0.19"
RANGE = rf"{SEP}\[\s*{NUMBER}\s*,\s*{NUMBER}\s*\]"
# metric -> its pattern in a line; case-insensitive, several may share a line (train_codec.py's epoch line)
PATTERNS = {
    "val/in_range": rf"\binput\s+range{RANGE}",
    "val/out_range": rf"\boutput\s+range{RANGE}",
    "val/range_ratio": rf"\brange\s+ratio{SEP}{NUMBER}",
    "val/rms_ratio": rf"\brms\s+ratio{SEP}{NUMBER}",
    "val/signal_power": rf"\bsignal\s+power{SEP}{NUMBER}",
    "val/noise_power": rf"\bnoise\s+power{SEP}{NUMBER}",
    "val/snr_db": rf"(?<![-\w])snr{SEP}{NUMBER}",
    "val/si_sdr_db": rf"(?<![-\w/])si[-_ ]?sdr{SEP}{NUMBER}",  # not the loss term rec/sisdr
    "val/mel_distance": rf"\bmel\s+distance{SEP}{NUMBER}",
    "vq/perplexity": rf"\bperplexity{SEP}{NUMBER}",
    "vq/dead_fraction": rf"{NUMBER}\s*%\s*(?:of\s+)?(?:the\s+)?codes\s+unused",
    "loss/total": rf"(?<![-\w/])loss{SEP}{NUMBER}",
    "opt/lr": rf"\b(?:learning[\s_-]+rate|lr){SEP}{NUMBER}",
    "val/pesq": rf"\bpesq{SEP}{NUMBER}",
    "val/stoi": rf"\bstoi{SEP}{NUMBER}",
}
COMPILED = {key: re.compile(pattern, re.IGNORECASE) for key, pattern in PATTERNS.items()}
EPOCH = re.compile(r"\bepoch\s*[:=#]?\s*(\d+)", re.IGNORECASE)
# what makes a record a debug block: a level or a score, read or derived
BLOCK = ("val/range_ratio", "val/rms_ratio", "val/snr_db")
ACCEPTED = (
    "train_codec.py's debug block, or lines such as 'Output range: [-0.15, 0.20]' with 'Input range: "
    "[-1.01, 1.01]', 'Range ratio 0.20', 'RMS ratio 0.17', 'SNR: -0.19 dB'"
)


def value(key: str, match: re.Match) -> float:
    numbers = [float(n) for n in match.groups()]
    if key in ("val/in_range", "val/out_range"):  # [low, high] -> the peak, as train() logs it
        return max(abs(n) for n in numbers)
    return numbers[0] / 100 if key == "vq/dead_fraction" else numbers[0]


def records(text: str) -> list[dict]:
    """One dict a block, its "epoch" when a line names one. A block starts at an epoch line with a new
    number, or, between unnumbered blocks, at a metric the block already has (train_codec.py prints its
    epoch line's metrics again in the block below it)."""
    found: list[dict] = [{}]
    for line in text.splitlines():
        if m := EPOCH.search(line):
            epoch, current = int(m[1]), found[-1]
            if current.get("epoch", epoch) != epoch or ("epoch" not in current and len(current) > 0):
                found.append({})
            found[-1]["epoch"] = epoch
        for key, pattern in COMPILED.items():
            for m in pattern.finditer(line):
                if key in found[-1] and "epoch" not in found[-1]:
                    found.append({})
                found[-1][key] = value(key, m)
    return [derive(r) for r in found]


def derive(record: dict) -> dict:
    """The range ratio from the two ranges and the SNR from the two powers, where not given."""
    if "val/range_ratio" not in record and {"val/in_range", "val/out_range"} <= record.keys():
        if record["val/in_range"] > 0:
            record["val/range_ratio"] = record["val/out_range"] / record["val/in_range"]
    powers = {"val/signal_power", "val/noise_power"}
    if "val/snr_db" not in record and powers <= record.keys() and record["val/noise_power"] > 0:
        if record["val/signal_power"] > 0:
            record["val/snr_db"] = 10 * math.log10(record["val/signal_power"] / record["val/noise_power"])
    return record


def parse(text: str, where: str, config: Config | None = None) -> History:
    """The debug blocks in text; a DoctorError naming `where` when there is none. Blocks without epoch
    numbers are numbered in order and called blocks; one without a number after a numbered one is the
    next epoch."""
    blocks = [r for r in records(text) if any(k in r for k in BLOCK)]
    if not blocks:
        raise DoctorError(
            f"{where} holds no debug block: no range, RMS ratio or SNR line (accepted: {ACCEPTED})"
        )
    numbered = any("epoch" in b for b in blocks)
    series: dict[str, dict[int, float]] = {}
    epoch = 0
    for block in blocks:
        epoch = block.pop("epoch", epoch + 1)
        for key, v in block.items():
            series.setdefault(key, {})[epoch] = v
    return History(series, config, unit="epoch" if numbered else "block")
