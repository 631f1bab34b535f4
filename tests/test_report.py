import dataclasses
import math
import re

import pytest

from tune_codec.cli import cell
from tune_codec.evaluation import evaluate
from tune_codec.report import report
from tune_codec.search import rows
from tune_codec.search.cost import COST, dollars

FILES = {"report.html", "report.txt", "history.png", "parallel.png", "best_vs_fields.png", "importances.png"}


def at_best_epoch(client, run_id: str, key: str) -> float:
    snr = {m.step: m.value for m in client.get_metric_history(run_id, "val/snr_db")}
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}[max(snr, key=snr.get)]


def test_the_report_tables_every_trial_ranks_the_fields_and_is_logged_to_the_search(
    smoke_search, tmp_path, capsys
):
    s = smoke_search
    out = tmp_path / "report"
    best = max(s.children, key=lambda c: c.data.metrics["val/best_snr_db"])
    checkpoint = f"runs:/{best.info.run_id}/checkpoint/best.pt"
    judged = [checkpoint, str(s.root / "corpus"), "--reference", "none", "--out", str(tmp_path / "eval")]
    assert evaluate.main([*judged, "--tracking-uri", str(s.db)]) == 0
    pesq = s.client.get_run(best.info.run_id).data.metrics["eval/pesq"]
    assert report.main(["smoke", "--tracking-uri", str(s.db), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == FILES
    text = (out / "report.txt").read_text()
    for child in s.children:
        (row,) = [line for line in text.splitlines() if line.startswith(child.data.tags["trial_id"])]
        si_sdr = at_best_epoch(s.client, child.info.run_id, "val/si_sdr_db")
        rms = at_best_epoch(s.client, child.info.run_id, "val/rms_ratio")
        for value in (child.data.metrics["val/best_snr_db"], si_sdr, rms, child.data.metrics[COST]):
            assert f" {value:.4g} " in row
        assert f" {dollars(child.data.metrics[COST] * 2.5)} " in row and row.rstrip().endswith(" completed")
    assert (
        f"best: trial {best.data.tags['trial_id']}, best validation SNR "
        f"{best.data.metrics['val/best_snr_db']:.2f} dB" in printed
    )
    assert f"python -m tune_codec.codec encode {checkpoint}" in printed
    # one row type: the search's summary, from Ray's results, printed the same trial table
    trials = text[: text.index("\n\n")].splitlines()
    assert sorted(trials[1:]) == sorted(s.out[s.out.index(trials[0]) :].splitlines()[1:4])
    # the best trial's held-out evaluation, as the evaluate command logged it to the trial's run
    evaluated = text.split(report.EVALUATED + "\n")[1].splitlines()
    assert evaluated[0].split()[:4] == ["codec", "kbps", "SNR", "dB"]
    assert evaluated[1].startswith("checkpoint ") and f" {cell(pesq)} " in evaluated[1]
    heading = "importances for search/score (PED-ANOVA, from 3 trials): "
    (line,) = [line for line in text.splitlines() if line.startswith(heading)]
    importances = dict(re.findall(r"(\w+) ([\d.]+)", line.removeprefix(heading)))
    assert set(importances) == {"rms_weight", "learning_rate"}
    assert sum(map(float, importances.values())) == pytest.approx(1, abs=0.002)
    page = (out / "report.html").read_text()
    held_out = report.evaluation(s.client.get_run(best.info.run_id))  # Opus too if the evaluate tests ran
    assert page.count('src="data:image/png;base64,') == 4
    assert page.count("<tr>") == 1 + 3 + 1 + len(held_out) and report.EVALUATED in page
    logged = {a.path for a in s.client.list_artifacts(s.parent.info.run_id, "report")}
    assert logged == {f"report/{name}" for name in FILES}


def test_the_report_of_a_search_folder_needs_no_tracking_uri(smoke_search, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./mlflow.db here: the folder's state names the store
    folder = smoke_search.root / "ray_results" / "smoke"
    assert report.main([str(folder), "--price-per-gpu-hour", "10"]) == 0
    printed = capsys.readouterr().out
    assert f"MLflow run {smoke_search.parent.info.run_id}" in printed and "at $10.00 per CPU-hour" in printed
    assert {p.name for p in (tmp_path / "reports" / "smoke").iterdir()} == FILES


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuch"], "no search named 'nosuch' in experiment 'tune-codec' (there are: smoke)"),
        (["smoke", "--experiment-name", "other"], "no MLflow experiment 'other' (there are: "),
        (["smoke", "--price-per-gpu-hour", "0"], "--price-per-gpu-hour 0 must be > 0"),
    ],
)
def test_bad_report_requests_are_one_line_errors(args, message, smoke_search, capsys):
    assert report.main([*args, "--tracking-uri", str(smoke_search.db)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_no_store_and_no_search_folder_are_errors_that_create_nothing(tmp_path, capsys):
    assert report.main(["smoke", "--tracking-uri", str(tmp_path / "none.db")]) == 2
    assert "no MLflow store at" in capsys.readouterr().err and not (tmp_path / "none.db").exists()
    assert report.main([str(tmp_path)]) == 2
    assert "is not a search folder (no " in capsys.readouterr().err


def test_a_trial_row_is_read_at_its_best_epoch_and_one_rule_says_which_trials_rank():
    history = {"val/snr_db": {1: 2.0, 2: 5.0, 3: math.nan}, "val/pesq": {1: 1.1, 2: 1.4, 3: 1.0}}
    epoch, best, others = rows.at_best_epoch(history, "val/snr_db", {"val/best_snr_db": 5.0})
    assert (epoch, best, others["val/pesq"]) == (2, 5.0, 1.4) and math.isnan(others["val/stoi"])
    # PBT: a running best above every epoch of its own came with the checkpoint it copied
    epoch, best, others = rows.at_best_epoch(history, "val/snr_db", {"val/best_snr_db": 6.5})
    assert (epoch, best) == (rows.COPIED, 6.5) and math.isnan(others["val/pesq"])
    assert rows.at_best_epoch({}, "val/pesq", {})[:1] == (0,)

    row = rows.TrialRow("t1", {"rms_weight": 10}, 3, 2, 5.0, others, "completed", False, "", 0.01, 30.0)
    assert row.useful and row.columns("val/snr_db", 2.0)["cost"] == dollars(0.02)
    headings = ["trial", "rms_weight", "epochs", "best epoch", "best SNR dB", "SI-SDR dB"]
    assert list(row.columns("val/snr_db"))[:6] == headings
    assert dataclasses.replace(row, reason="ASHA after 2 epochs").useful
    for worthless in (
        dataclasses.replace(row, reason="range collapse: range ratio 0.1 < 0.5"),
        dataclasses.replace(row, failed=True),
        dataclasses.replace(row, best=math.nan),
    ):
        assert not worthless.useful
