"""The doctor on runs the trainer itself produces on the demo corpus (one failure config per finding), on the
seed's pasted debug text, on a train_codec.py run in MLflow, and on the search it prescribes."""

import contextlib
import importlib.util
import io
import json
import math
import re
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

import train_codec
from tune_codec.config import make_config, to_flags
from tune_codec.data.segments import load_data
from tune_codec.doctor import cli as doctor
from tune_codec.doctor.findings import (
    CODEBOOK,
    DISC_LOSES,
    DIVERGING,
    FIXED,
    INVERTED,
    LEVELLED,
    LOUD,
    MORE_STEPS,
    PHASE,
    QUIET,
    SLOW,
    THRESHOLDS,
)
from tune_codec.doctor.paste import parse
from tune_codec.doctor.prescribe import prescribe, write_space
from tune_codec.doctor.rules import diagnose
from tune_codec.doctor.series import from_rows
from tune_codec.metrics import debug_block
from tune_codec.report import report
from tune_codec.search.stopping import StopRules
from tune_codec.tracking import resolve_tracking_uri
from tune_codec.training.train import format_epoch, train

from .conftest import TINY

ROOT = Path(__file__).parent.parent
# the original user's trainer's printout, as pasted (range ratio 0.20, SNR -0.19 dB)
SEED = """
       Input  range: [-1.012916, 1.010821]
       Output range: [-0.151123, 0.204956]
       Signal power: 0.06101952
       Noise power:  0.06371628
       SNR: -0.19 dB
"""
# TINY on the demo corpus, cut so that a run takes seconds: 10 steps an epoch, 4 s of validation audio
FAST = {**TINY, "max_steps_per_epoch": 10, "valid_max_seconds": 4, "perceptual_segments": 0}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny codec gains nothing from a second thread and loses much when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return load_data(None, make_config(FAST), tmp_path_factory.mktemp("cache"))


def trained(demo, folder: Path, start=None, **changes):
    """A train() run of FAST with changes on the demo corpus: its History as its reports say, and the
    reports; start(config, folder) may write the last.pt it starts from."""
    config, reports = make_config({**FAST, **changes}), []
    if start:
        start(config, folder)
    train(
        config,
        demo,
        lambda m, _: reports.append(m),
        checkpoint_dir=folder,
        resume_from=start and folder,
        quiet=True,
    )
    return from_rows(reports, config), reports


def names(findings) -> list[str]:
    return [f.name for f in findings]


def default_biases_start():
    """benchmarks/amplitude_trap.py's start from PyTorch's default bias init (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("amplitude_trap", ROOT / "benchmarks" / "amplitude_trap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.start_with_default_biases


@pytest.fixture(scope="module")
def seed_case(demo, tmp_path_factory):
    """The seed's failure reproduced: L1 + VQ only (rms and peak 0) at learning rate 1e-5."""
    return trained(
        demo, tmp_path_factory.mktemp("seed"), rms_weight=0, peak_weight=0, learning_rate=1e-5, num_epochs=5
    )


def test_the_seeds_pasted_numbers_are_too_quiet(tmp_path, capsys):
    (tmp_path / "seed.txt").write_text(SEED)
    assert doctor.main([str(tmp_path / "seed.txt"), "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    (quiet,) = run["findings"]
    assert quiet["name"] == QUIET
    assert f"val/range_ratio {0.204956 / 1.012916:.3g} at block 1 (below 0.5)" in quiet["evidence"]
    assert "output peak 0.205 to the input's 1.01" in quiet["evidence"]
    assert "val/snr_db -0.19" in quiet["evidence"]
    assert quiet["fields"] == {"rms_weight": "up", "peak_weight": "up"}


def test_pasted_lines_are_read_in_any_order_spacing_and_with_or_without_epochs():
    pasted = parse(
        "Epoch 7/100\nSNR:-0.19 dB\n  Output range:[-0.151123,0.204956]\nInput  range = [-1.01, 1.01]\n"
        "Range ratio 0.20, RMS ratio 0.17\n\nEpoch 8/100 - loss: 0.07\nRMS ratio: 0.25\nrange ratio   0.3\n",
        "pasted",
    )
    assert pasted.unit == "epoch" and pasted.epochs == [7, 8]
    assert pasted.series["val/rms_ratio"] == {7: 0.17, 8: 0.25}
    assert pasted.series["val/range_ratio"] == {7: 0.20, 8: 0.3}  # given beats derived from the ranges
    assert pasted.series["loss/total"] == {8: 0.07}
    twice = parse(SEED + SEED.replace("-0.19", "0.5"), "twice")  # blocks without epochs: in the order pasted
    assert twice.unit == "block" and twice.series["val/snr_db"] == {1: -0.19, 2: 0.5}
    assert twice.series["val/snr_db"][1] == pytest.approx(10 * math.log10(0.06101952 / 0.06371628), abs=0.01)


# train_codec.py's epoch lines of the cpu-freq-8kbps codec on real speech: its rec/sisdr term takes the
# total below 0 from epoch 3 while every score improves
FREQ_EPOCHS = """\
epoch 1: loss 13.6477 | range ratio 1.072 RMS ratio 0.943 SNR 3.29 dB SI-SDR 0.66 dB  PESQ 1.11 STOI 0.745
epoch 2: loss 1.5747 | range ratio 1.163 RMS ratio 0.923 SNR 5.64 dB SI-SDR 4.24 dB  PESQ 1.35 STOI 0.817
epoch 3: loss -2.0923 | range ratio 0.956 RMS ratio 0.951 SNR 6.97 dB SI-SDR 6.06 dB  PESQ 1.44 STOI 0.851
epoch 4: loss -3.8091 | range ratio 1.201 RMS ratio 0.920 SNR 7.99 dB SI-SDR 7.27 dB  PESQ 1.71 STOI 0.886
epoch 5: loss -4.9205 | range ratio 0.994 RMS ratio 0.886 SNR 8.55 dB SI-SDR 7.95 dB  PESQ 1.76 STOI 0.897
epoch 6: loss -5.8688 | range ratio 1.028 RMS ratio 1.094 SNR 8.35 dB SI-SDR 8.67 dB  PESQ 1.90 STOI 0.903
"""


def test_a_loss_below_zero_is_not_read_as_diverging_until_it_rises_by_its_size():
    healthy = parse(FREQ_EPOCHS, "pasted")
    assert healthy.series["loss/total"][6] == -5.8688
    assert DIVERGING not in {f.name for f in diagnose(healthy)}  # -5.87 is not "over 2x" -4.92
    rising = parse(FREQ_EPOCHS + "epoch 7: loss 3.1 | range ratio 1.0 SNR 8.0 dB\n", "pasted")
    (finding,) = [f for f in diagnose(rising) if f.name == DIVERGING]
    assert "rose from -5.87 at epoch 6 to 3.1 at epoch 7" in finding.evidence
    spike = parse(FREQ_EPOCHS.replace("loss -3.8091", "loss 60.0"), "pasted")
    assert "loss/total 60 at epoch 4" in next(f for f in diagnose(spike) if f.name == DIVERGING).evidence


# A freq codec on the real-speech corpus trained on plain SI-SDR, which scores the input upside down as the
# input: it learned exactly that (rec/sisdr keeps the sign since)
INVERTED_EPOCHS = """\
epoch 1: loss 51.5610 | range ratio 1.821 RMS ratio 0.711 SNR -3.38 dB SI-SDR -7.00 dB  PESQ 1.02 STOI 0.606
epoch 2: loss 14.9037 | range ratio 1.123 RMS ratio 0.898 SNR -5.06 dB SI-SDR 1.74 dB  PESQ 1.17 STOI 0.777
epoch 3: loss 7.4597 | range ratio 1.089 RMS ratio 1.015 SNR -5.81 dB SI-SDR 5.18 dB  PESQ 1.39 STOI 0.828
epoch 4: loss 4.0102 | range ratio 1.059 RMS ratio 0.941 SNR -5.55 dB SI-SDR 6.57 dB  PESQ 1.51 STOI 0.872
epoch 5: loss 2.5332 | range ratio 1.210 RMS ratio 0.992 SNR -5.80 dB SI-SDR 7.12 dB  PESQ 1.65 STOI 0.887
epoch 6: loss 1.4336 | range ratio 1.056 RMS ratio 0.933 SNR -5.57 dB SI-SDR 8.17 dB  PESQ 1.77 STOI 0.889
epoch 7: loss 0.5924 | range ratio 1.148 RMS ratio 1.053 SNR -6.10 dB SI-SDR 8.35 dB  PESQ 1.86 STOI 0.910
"""
# The same codec on mel, L1 0.1, RMS and peak, without rec/sisdr: epochs 27-33 of its run
PHASE_EPOCHS = """\
epoch 27: loss 4.9744 | range ratio 1.066 RMS ratio 0.966 SNR 2.77 dB SI-SDR 0.09 dB  PESQ 2.37 STOI 0.951
epoch 28: loss 4.9512 | range ratio 1.158 RMS ratio 0.943 SNR 2.74 dB SI-SDR -0.09 dB  PESQ 2.44 STOI 0.948
epoch 29: loss 4.9076 | range ratio 1.096 RMS ratio 0.929 SNR 2.94 dB SI-SDR 0.16 dB  PESQ 2.36 STOI 0.952
epoch 30: loss 4.8646 | range ratio 1.128 RMS ratio 0.922 SNR 3.07 dB SI-SDR 0.39 dB  PESQ 2.35 STOI 0.952
epoch 31: loss 4.8907 | range ratio 1.075 RMS ratio 0.910 SNR 2.93 dB SI-SDR 0.18 dB  PESQ 2.38 STOI 0.952
epoch 32: loss 4.8460 | range ratio 1.142 RMS ratio 0.925 SNR 3.37 dB SI-SDR 0.96 dB  PESQ 2.43 STOI 0.951
epoch 33: loss 4.8225 | range ratio 1.089 RMS ratio 0.895 SNR 3.38 dB SI-SDR 0.86 dB  PESQ 2.45 STOI 0.954
"""


def test_an_output_upside_down_is_told_from_one_learning_slowly():
    (finding,) = diagnose(parse(INVERTED_EPOCHS, "pasted"))  # L1 cannot fall, which read as learning slowly
    assert finding.name == INVERTED
    assert "val/snr_db -6.1 to -5.55 at epochs 4-7 (at or below 0 dB)" in finding.evidence
    assert "val/si_sdr_db 6.57 to 8.35 at epochs 4-7" in finding.evidence
    assert finding.fields == {"sisdr_weight": "up", "l1_weight": "up"} and finding.metric == "val/snr_db"
    # 1.6x as loud, an output on the input's side could score that SNR: the level rule's turn, not this one's
    louder = re.sub(r"RMS ratio [\d.]+", "RMS ratio 1.6", INVERTED_EPOCHS)
    assert INVERTED not in names(diagnose(parse(louder, "pasted")))
    assert INVERTED not in names(diagnose(parse(FREQ_EPOCHS, "pasted")))  # the sign right: SNR beside SI-SDR


def test_an_output_that_sounds_right_on_the_wrong_waveform_searches_rec_sisdr(tmp_path):
    (finding,) = diagnose(parse(PHASE_EPOCHS, "pasted"))  # was: healthy, levelled off (on PESQ)
    assert finding.name == PHASE
    assert "val/pesq 2.35 to 2.45 at epochs 27-33 (at least 2)" in finding.evidence
    assert "val/si_sdr_db -0.09 to 0.96 at epochs 27-33 (below 3 dB)" in finding.evidence
    config = make_config({"model": "freq", "l1_weight": 0.1, "mel_weight": 15.0, "best_metric": "val/pesq"})
    space = prescribe([finding], config)
    assert space["metric"] == "val/si_sdr_db" and space["start"] == [{"sisdr_weight": 0.0}]
    assert space["search"] == {"sisdr_weight": {"uniform": [0.0, 3.0]}}  # to 3x the CPU tier's 1
    write_space(tmp_path / "space.yaml", space, [finding], "pasted")  # what tune_codec.run would accept
    healthy_waveform = re.sub(r"SI-SDR [-\d.]+ dB", "SI-SDR 9.00 dB", PHASE_EPOCHS)
    assert PHASE not in names(diagnose(parse(healthy_waveform, "pasted")))


def test_train_codec_printout_reads_back_as_the_metrics_it_printed(seed_case):
    history, reports = seed_case
    printed = "\n".join(f"{format_epoch(m)}\n{debug_block(m)}" for m in reports)  # what train() prints
    pasted = parse(printed, "printout")
    assert pasted.epochs == history.epochs
    for key in ("val/range_ratio", "val/rms_ratio", "val/snr_db", "val/si_sdr_db", "vq/perplexity"):
        for epoch, value in history.series[key].items():
            assert pasted.series[key][epoch] == pytest.approx(value, rel=0.01, abs=0.006), (key, epoch)
    assert names(diagnose(pasted)) == [QUIET, SLOW]  # the printout alone: the same diagnosis, less the config


def test_l1_and_vq_at_1e_5_is_too_quiet_and_learns_too_slowly(seed_case, tmp_path):
    history, _ = seed_case
    quiet, slow = diagnose(history)
    assert (quiet.name, slow.name) == (QUIET, SLOW)
    ratios = [v for e, v in history.points("val/range_ratio") if e > THRESHOLDS.grace_epochs]
    assert max(ratios) < THRESHOLDS.quiet and "(below 0.5)" in quiet.evidence
    assert "trains no amplitude term (rms_weight 0, peak_weight 0)" in quiet.mechanism
    assert "learning_rate 1e-05 (below 0.0001, 100x under the default)" in slow.evidence
    assert (
        "val/range_ratio" in slow.evidence
        and "more to reach 0.5" in slow.evidence
        or "never" in slow.evidence
    )
    space = write_space(
        tmp_path / "space.yaml", prescribe([quiet, slow], history.config), [quiet, slow], "run"
    )
    assert space.search == {
        "rms_weight": ("uniform", (0.0, 30.0)),
        "peak_weight": ("uniform", (0.0, 15.0)),
        "learning_rate": ("loguniform", (1e-5, 0.003)),
    }
    assert space.start == ({"rms_weight": 0.0, "peak_weight": 0.0, "learning_rate": 1e-5},)  # the run first
    assert space.metric == "val/snr_db" and space.base.sample_rate == FAST["sample_rate"]


def test_pytorch_default_biases_with_rms_10_and_peak_5_draw_a_fixed_pattern(demo, tmp_path):
    history, _ = trained(demo, tmp_path, start=default_biases_start(), learning_rate=1e-3, num_epochs=6)
    found = diagnose(history)
    assert names(found)[0] == FIXED and QUIET not in names(found)
    assert history.last("val/si_sdr_db") < THRESHOLDS.fixed_si_sdr_db <= -20
    assert history.last("val/rms_ratio") >= THRESHOLDS.fixed_level
    assert found[0].fields == {"rms_weight": "down", "peak_weight": "down", "l1_weight": "up"}
    assert found[0].metric == "val/si_sdr_db"


def test_a_healthy_run_needs_more_steps_with_an_estimate(demo, tmp_path):
    history, _ = trained(demo, tmp_path, num_epochs=6)  # the same config with zero biases and lr 3e-3
    (more,) = diagnose(history)
    assert more.name == MORE_STEPS and "Estimate: 12 epochs gain about" in more.evidence
    assert prescribe([more], history.config)["config"]["num_epochs"] == 12


# cpu-freq-8kbps on the real-speech corpus, validation PESQ-WB of epochs 1-33 (rounded); epoch 66 scored 3.03
FREQ_PESQ = [1.11, 1.35, 1.44, 1.71, 1.76, 1.9, 2.13, 2.04, 2.08, 2.2, 2.16, 2.32, 2.16, 2.34, 2.46, 2.33,
             2.37, 2.52, 2.51, 2.4, 2.53, 2.49, 2.43, 2.64, 2.5, 2.62, 2.59, 2.7, 2.64, 2.58, 2.54, 2.71,
             2.67]  # fmt: skip


def test_a_run_is_still_learning_while_a_doubling_of_its_epochs_gains_enough():
    config = make_config({"model": "freq", "best_metric": "val/pesq"})
    rows = [{"epoch": e, "val/pesq": v} for e, v in enumerate(FREQ_PESQ, 1)]
    # 0.02 PESQ an epoch, which a rule by the epoch had called levelled off
    (more,) = diagnose(from_rows(rows, config))
    assert more.name == MORE_STEPS
    assert (
        "Estimate: 66 epochs gain about 0.256 more (fitted as a + b ln(epoch) over epochs 17-33)"
        in more.evidence
    )
    flat = [{**row, "val/pesq": 2.55} if row["epoch"] > 16 else row for row in rows]
    (levelled,) = diagnose(from_rows(flat, config))
    assert levelled.name == LEVELLED and "gain about 0 more" in levelled.evidence


def test_a_learning_rate_of_1_makes_the_loss_diverge(demo, tmp_path):
    history, _ = trained(demo, tmp_path, learning_rate=1.0, num_epochs=6)
    found = diagnose(history)
    assert names(found)[0] == DIVERGING and found[0].evidence.startswith("loss/total ")
    losses = [v for _, v in history.points("loss/total")]
    assert max(losses) > THRESHOLDS.rise * min(losses)  # a healthy run's falls from its first epoch on
    assert found[0].fields == {"learning_rate": "down"}


# The lr 1.0 run of the test above on another machine: the loss blew up, came back, the codebook collapsed
CAME_BACK = """\
epoch 1: loss 40234.4031 | range ratio 2645.669 RMS ratio 9744.604 SNR -79.78 dB
epoch 2: loss 27086385.5218 | range ratio 117.395 RMS ratio 516.842 SNR -54.27 dB
epoch 3: loss 7489548.0446 | range ratio 4.120 RMS ratio 12.671 SNR -22.08 dB
epoch 4: loss 1089.3798 | range ratio 0.892 RMS ratio 0.430 SNR -0.73 dB
epoch 5: loss 2.8211 | range ratio 0.405 RMS ratio 1.173 SNR -3.76 dB
epoch 6: loss 3.4385 | range ratio 0.380 RMS ratio 0.224 SNR -0.22 dB
"""


def test_a_loss_that_blew_up_and_came_back_still_diverged():
    found = diagnose(parse(CAME_BACK, "pasted"))  # was: output too quiet (the level after the blow-up)
    assert names(found)[0] == DIVERGING and QUIET not in names(found)
    assert found[0].evidence == "loss/total 2.71e+07 at epoch 2, over 10x the 4.02e+04 of epoch 1"
    steep_start = CAME_BACK.replace("loss 27086385.5218", "loss 12000.0").replace(
        "loss 7489548.0446", "loss 5000.0"
    )
    assert DIVERGING not in names(diagnose(parse(steep_start, "pasted")))  # falling after a loud start


def test_a_learning_rate_of_10_without_clipping_explodes_the_output(demo, tmp_path):
    history, _ = trained(demo, tmp_path, learning_rate=10.0, grad_clip=0, num_epochs=4)
    found = diagnose(history)
    assert LOUD in names(found) and history.last("val/rms_ratio") > THRESHOLDS.loud
    assert "(above 2)" in next(f for f in found if f.name == LOUD).evidence


def test_a_huge_codebook_without_dead_code_restart_collapses(demo, tmp_path):
    history, _ = trained(demo, tmp_path, codebook_size=1024, dead_code_threshold=0, num_epochs=4)
    (collapse,) = [f for f in diagnose(history) if f.name == CODEBOOK]
    assert history.last("vq/dead_fraction") > THRESHOLDS.dead_fraction
    assert "of 1024 codes a stage" in collapse.evidence and "restart is off" in collapse.mechanism
    assert collapse.fields == {"dead_code_threshold": "up", "codebook_size": "down"}
    assert prescribe([collapse], history.config)["search"]["codebook_size"] == {
        "categorical": [256, 512, 1024]
    }


def test_a_one_channel_discriminator_loses_outright(demo, tmp_path):
    history, _ = trained(demo, tmp_path, adv_weight=10, discriminators="mpd", disc_channels=1, num_epochs=4)
    (loses,) = [f for f in diagnose(history) if f.name == DISC_LOSES]
    assert "at or above 9.5: 0.95 of 10" in loses.evidence  # 5 periods at hinge chance 2 each
    assert loses.fields == {"disc_channels": "up", "adv_weight": "down"}


def test_the_thresholds_are_the_stop_rules_where_they_share_one():
    rules = StopRules()
    assert (THRESHOLDS.quiet, THRESHOLDS.loud) == rules.range_ratio
    assert (THRESHOLDS.grace_epochs, THRESHOLDS.min_perplexity) == (rules.grace_epochs, rules.min_perplexity)


def test_a_run_that_failed_on_a_non_finite_loss_is_diagnosed_from_mlflow(tmp_path, capsys):
    db, folder = tmp_path / "mlflow.db", tmp_path / "nan"
    flags = [
        "--checkpoint_dir",
        str(folder),
        "--tracking_uri",
        str(db),
        "--cache_dir",
        str(tmp_path / "cache"),
    ]
    assert (
        train_codec.main([*flags, *to_flags(make_config({**FAST, "learning_rate": 100.0, "grad_clip": 0}))])
        == 1
    )
    run_id = json.loads((folder / "mlflow_run.json").read_text())["runs"]["run"]
    capsys.readouterr()
    for source in (str(folder), run_id, f"runs:/{run_id}/checkpoint/best.pt"):
        assert doctor.main([source, "--tracking-uri", str(db), "--json"]) == 0
        (run,) = json.loads(capsys.readouterr().out)["runs"]
        (diverged,) = run["findings"]
        assert diverged["name"] == DIVERGING and "non-finite loss at epoch 1 step" in diverged["evidence"]
        assert "learning_rate 100" in diverged["prescription"]


@pytest.mark.parametrize(
    "source, says",
    [
        ("no-such-thing", "'no-such-thing' is none of: an MLflow run id or runs:/ID"),
        ("empty.txt", "empty.txt holds no debug block: no range, RMS ratio or SNR line"),
        ("silent", "has no metrics yet"),
    ],
)
def test_bad_sources_are_one_line_naming_what_was_found_and_what_is_accepted(tmp_path, capsys, source, says):
    db = tmp_path / "mlflow.db"
    client = MlflowClient(resolve_tracking_uri(str(db)))
    client.search_experiments()  # the store exists, its creation logged before the command runs
    if source == "empty.txt":
        (tmp_path / source).write_text("epoch 3: nothing to see\nloss 0.5\n")
        source = str(tmp_path / source)
    if source == "silent":  # a run that logged no epoch
        source = client.create_run(client.create_experiment("x")).info.run_id
    capsys.readouterr()
    assert doctor.main([source, "--tracking-uri", str(db)]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_written_space_searches_and_the_summary_and_report_name_the_diagnosis(
    ray_local, seed_case, tmp_path, capsys
):
    """The seed's failure as a train_codec.py run, its prescribed search (the run itself first), then the
    search's summary and report naming the stopped trial's diagnosis, and the doctor on the search."""
    db, folder = tmp_path / "mlflow.db", tmp_path / "seed"
    common = ["--tracking_uri", str(db), "--cache_dir", str(tmp_path / "cache")]
    config = make_config({**FAST, "rms_weight": 0, "peak_weight": 0, "learning_rate": 1e-5, "num_epochs": 5})
    assert train_codec.main(["--checkpoint_dir", str(folder), *common, *to_flags(config)]) == 0
    capsys.readouterr()
    search = ["--search", "--trials", "2", "--name", "cure", "--storage-path", str(tmp_path / "ray")]
    # 1: every trial collapsed, which a second trial drawn at random in a 5-epoch budget may well do
    assert doctor.main([str(folder), "--write-space", str(tmp_path / "cure.yaml"), *common, *search]) in (
        0,
        1,
    )
    out = capsys.readouterr().out
    assert "2 trials," in out  # the search ran to its summary
    assert f"1. {QUIET}" in out and f"2. {SLOW}" in out
    header = next(line for line in out.splitlines() if line.startswith("trial ") and "stop reason" in line)
    table = out[out.index(header) :]
    assert header.rstrip().endswith("diagnosis") and f"{QUIET}; {SLOW}" in table  # the run itself, stopped
    assert f"findings in full: python -m tune_codec.doctor {tmp_path / 'ray' / 'cure'}" in out

    assert report.main(["cure", "--tracking-uri", str(db), "--out", str(tmp_path / "report")]) == 0
    assert f"{QUIET}; {SLOW}" in (tmp_path / "report" / "report.txt").read_text()
    capsys.readouterr()
    assert doctor.main([str(tmp_path / "ray" / "cure"), "--json"]) == 0
    stopped = json.loads(capsys.readouterr().out)["runs"]
    assert any([f["name"] for f in run["findings"]][:2] == [QUIET, SLOW] for run in stopped)
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert doctor.main([str(tmp_path / "ray" / "cure"), "--write-space", "x.yaml"]) == 2
    assert "give one trial's run id" in err.getvalue()
