import math

import pytest

from tune_codec.names import REASON, SCORE
from tune_codec.search.stopping import StopRules, judge, stop_reason

RULES = StopRules(grace_epochs=2, range_ratio=(0.5, 2.0), min_perplexity=2.0, penalty_db=-30.0)


def epoch(n, ratio=1.0, perplexity=50.0, snr=3.0):
    return {"epoch": n, "val/range_ratio": ratio, "vq/perplexity": perplexity, "val/snr_db": snr}


@pytest.mark.parametrize(
    "metrics, reason",
    [
        (epoch(5), None),
        (epoch(2, ratio=0.01), None),  # within the grace period
        (epoch(3, ratio=0.2), "range collapse: ratio 0.200 outside 0.5-2.0"),
        (epoch(3, ratio=2.5), "range collapse: ratio 2.500 outside 0.5-2.0"),
        (epoch(3, perplexity=1.0), "codebook collapse: perplexity 1.00 < 2.0"),
        (epoch(1, snr=math.nan), "non-finite val/snr_db"),
    ],
)
def test_stop_reason(metrics, reason):
    assert stop_reason(metrics, RULES) == reason


def test_a_stopped_trial_reports_the_penalty_so_the_sampler_learns_it_was_bad():
    # a quiet collapsed output scores ~0 dB SNR, better than a healthy codec's early -3 dB
    collapsed, healthy = (
        judge(epoch(3, ratio=0.2, snr=0.0), RULES, "val/snr_db"),
        judge(epoch(3, snr=-3.0), RULES, "val/snr_db"),
    )
    assert collapsed[SCORE] == -30.0 and collapsed[REASON].startswith("range collapse")
    assert healthy[SCORE] == -3.0 and healthy[REASON] == ""
    assert collapsed["val/snr_db"] == 0.0  # the true metric is still reported


@pytest.mark.parametrize(
    "kwargs", [{"range_ratio": (1.2, 2.0)}, {"grace_epochs": -1}, {"min_perplexity": 0.5}]
)
def test_bad_rules_are_refused(kwargs):
    with pytest.raises(ValueError):
        StopRules(**kwargs)


def test_a_metric_missing_from_an_epoch_stops_the_trial_with_the_reason():
    verdict = judge(epoch(1), RULES, "val/pesq")
    assert verdict[REASON] == "no val/pesq this epoch" and verdict[SCORE] == -30.0
