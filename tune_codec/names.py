"""The names that flow between the modules, the console, Tune and MLflow, each written once here."""

from __future__ import annotations

# what a run's checkpoint folder holds
LAST, BEST, SAMPLES = "last.pt", "best.pt", "samples"

# The validation metrics a run keeps the best epoch of (higher is better); PESQ and STOI are scored on
# perceptual_segments segments.
BEST_METRICS = ("val/snr_db", "val/si_sdr_db", "val/pesq", "val/stoi")
PERCEPTUAL = ("val/pesq", "val/stoi")

# what a trial adds to each epoch's metrics: why it should stop ('' when healthy) and what the sampler
# learns from (the metric, or a penalty when stopped)
REASON, SCORE = "stop/reason", "search/score"

# How a trial ended, as the first words of its stop reason
NON_FINITE = "non-finite"  # a metric or the loss went NaN or infinite
RANGE_COLLAPSE = "range collapse"  # max|out| / max|in| outside its allowed band
CODEBOOK_COLLAPSE = "codebook collapse"  # too few codes in use
ASHA = "ASHA after"  # ASHA stopped it early: a result, not a fault
COMPLETED = "completed"  # trained every epoch

# Every table's heading for a score, by its name in the metrics (val/<name>, eval/<name>): the summary, the
# report, the evaluate command and the console say it alike
LABELS = {
    "snr_db": "SNR dB",
    "si_sdr_db": "SI-SDR dB",
    "pesq": "PESQ",
    "stoi": "STOI",
    "mel": "mel distance",
    "range_ratio": "range ratio",
    "rms_ratio": "RMS ratio",
}
# The evaluate command's score columns -> their names in MLflow (eval/<name>), in its order
METRIC_NAMES = {LABELS[name]: name for name in ("snr_db", "si_sdr_db", "pesq", "stoi", "mel")}


def label(metric: str) -> str:
    """A score as a column heading: val/si_sdr_db -> SI-SDR dB; a name it does not know as it is."""
    return LABELS.get(metric.rpartition("/")[2], metric)


def best_key(metric: str) -> str:
    """The running best of a validation metric, as logged: val/pesq -> val/best_pesq."""
    return metric.replace("val/", "val/best_", 1)


def at_codebooks(metric: str, n: int) -> str:
    """A validation metric scored from the first n codebooks: val/snr_db -> val/codebooks_2/snr_db."""
    return metric.replace("val/", f"val/codebooks_{n}/", 1)
