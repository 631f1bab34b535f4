"""The console a person reads during a search: the project's own lines, no Ray table or config dump unless
--verbose; each trial's full log in a file and in its MLflow run."""

import re

import pytest

from tune_codec import run
from tune_codec.search.trial import log_file

from .conftest import SMOKE

STAMP = r"\[\d+:\d\d:\d\d\] "  # the time since the search started
NUMBER = r"-?[\d.]+"


def test_a_search_prints_the_projects_lines_and_no_ray_table(smoke_search):
    out = smoke_search.out
    ids = {c.data.tags["trial_id"] for c in smoke_search.children}
    for trial_id in ids:
        assert re.search(rf"{STAMP}trial {trial_id} started: rms_weight [\d.]+, learning_rate [\d.]+\n", out)
        for epoch in (1, 2, 3):
            line = rf"{STAMP}trial {trial_id} epoch {epoch}/3: SNR {NUMBER} dB \(its best {NUMBER}\), range"
            assert re.search(line, out), epoch
        assert re.search(rf"{STAMP}trial {trial_id} completed its 3 epochs; SNR -?[\d.]+ dB, its best", out)
    assert re.search(rf"{STAMP}search: 3 trials, 2 at once, up to 3 epochs each, ranked on val/snr_db", out)
    best = max(smoke_search.children, key=lambda c: c.data.metrics["val/best_snr_db"])
    score = best.data.metrics["val/best_snr_db"]
    assert f"best so far: trial {best.data.tags['trial_id']}, best SNR {score:.2f} dB (rms_weight" in out
    assert len(re.findall(rf"{STAMP}progress: \d of 3 trials done", out)) == 3
    assert re.search(
        r"progress: 1 of 3 trials done, 1 running; \d epochs of at most 9; at most about \d+ (s|min)", out
    )
    assert "progress: 3 of 3 trials done, 0 running; 9 epochs of at most 9\n" in out
    assert f"watch it: optuna-dashboard {smoke_search.root / 'optuna.journal'}" in out
    # none of Ray's console: its status table, its config box and dump, its TensorBoard hint
    for ray_line in ("Trial status", "Current best trial", "params={", "Configuration for experiment"):
        assert ray_line not in out
    assert "TensorBoard" not in out and "adam_beta1" not in out  # a default: only Ray's dump would show it


def test_each_trials_full_log_is_a_file_and_an_mlflow_artifact(smoke_search, tmp_path):
    client, folder = smoke_search.client, smoke_search.root / "ray_results" / "smoke"
    for child in smoke_search.children:
        trial_id = child.data.tags["trial_id"]
        text = log_file(folder, trial_id).read_text()
        assert text.startswith(f"trial {trial_id} started ")
        assert "  adam_beta1: 0.9\n" in text  # the full config
        assert text.count("\n  SNR ") == 3 and text.count("  range ratio ") == 3  # each epoch's debug block
        assert "  rec/l1" in text and "  amp/rms" in text and "logged only     rec/mel" in text
        assert f"trial {trial_id} completed its 3 epochs" in text.splitlines()[-1]
        (artifact,) = [a.path for a in client.list_artifacts(child.info.run_id) if a.path.endswith(".log")]
        assert artifact == f"{trial_id}.log"
        local = client.download_artifacts(child.info.run_id, artifact, str(tmp_path))
        assert open(local).read() == text


@pytest.mark.slow  # a search of its own
def test_verbose_brings_back_rays_table(ray_local, search_env, capsys):
    flags, _ = search_env
    assert run.main(["--space", str(SMOKE), "--trials", "1", "--verbose", *flags]) == 0
    out = capsys.readouterr().out
    assert "Trial status" in out and "Configuration for experiment" in out
    assert re.search(r"trial \w+ completed its 3 epochs", out)  # the project's lines as well
