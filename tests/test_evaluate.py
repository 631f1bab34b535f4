"""The evaluate command on real files with a real checkpoint and real Opus (opus-tools), its scores'
plumbing, and the real-speech corpus builder on Debian's asterisk prompts."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tune_codec.codec.losses import CodecLoss
from tune_codec.config import make_config
from tune_codec.data.segments import is_valid_file
from tune_codec.evaluation import evaluate, opus

from .conftest import speechlike

ROOT = Path(__file__).parent.parent
needs_opus = pytest.mark.skipif(opus.missing() is not None, reason=opus.missing() or "")


def speech(seconds: float, rate: int) -> np.ndarray:
    return speechlike(seconds, rate).astype(np.float32)


def test_align_finds_the_shift_opus_adds():
    x = speech(1.0, 16000)
    for lag in (-37, 0, 120):
        shifted = np.roll(np.pad(x, 200), lag)[200:-200]
        assert np.allclose(opus.align(x, shifted, 320)[300:-300], x[300:-300])


def test_a_perfect_copy_scores_the_top_and_noise_lowers_every_score():
    config = make_config({"sample_rate": 16000})
    x = speech(3.0, 16000)
    mel = CodecLoss(config).mel
    same = evaluate.score(x, x.copy(), 16000, mel)
    noise = 0.05 * np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    noisy = evaluate.score(x, x + noise, 16000, mel)
    assert same["PESQ"] > 4.4 and same["STOI"] > 0.99 and same["mel distance"] == 0
    assert noisy["PESQ"] < same["PESQ"] - 1 and noisy["STOI"] < same["STOI"] and noisy["SNR dB"] < 20


@pytest.fixture
def eval_dir(smoke_search, tmp_path):
    """The smoke search's corpus plus a file that is not audio and one shorter than a segment."""
    data = tmp_path / "audio"
    shutil.copytree(smoke_search.root / "corpus", data)
    (data / "broken.wav").write_bytes(b"RIFF not really")
    sf.write(data / "short.wav", np.zeros(10, dtype=np.float32), 8000)
    best = max(smoke_search.children, key=lambda c: c.data.metrics["val/best_snr_db"])
    return data, best, ["--tracking-uri", str(smoke_search.db), "--out", str(tmp_path / "out")]


@needs_opus
def test_a_checkpoint_and_opus_are_scored_on_every_readable_file(eval_dir, smoke_search, tmp_path, capsys):
    data, best, flags = eval_dir
    checkpoint = f"runs:/{best.info.run_id}/checkpoint/best.pt"
    assert evaluate.main([checkpoint, str(data), *flags]) == 0
    out, err = capsys.readouterr()
    assert "skipped broken.wav: unreadable" in err and "skipped short.wav: shorter than one segment" in err
    assert "6 files scored, 2 skipped; reference: Opus (opus-tools)" in out
    rows = list(csv.DictReader(open(tmp_path / "out" / "files.csv")))
    assert sorted({row["codec"] for row in rows}) == ["checkpoint", "opus 16 kbps"] and len(rows) == 12
    for row in rows:
        assert -0.5 <= float(row["PESQ"]) <= 4.5 and 0 <= float(row["STOI"]) <= 1
        if row["codec"] == "checkpoint":  # the codes at 2 x 4 bits a frame, padded to whole frames
            assert 16 <= float(row["kbps"]) < 16.1
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert set(report["skipped"]) == {"broken.wav", "short.wav"} and len(report["means"]) == 2
    metrics = smoke_search.client.get_run(best.info.run_id).data.metrics
    assert {"eval/pesq", "eval/stoi", "eval/si_sdr_db", "eval/opus_16kbps/pesq"} <= set(metrics)
    assert metrics["eval/pesq"] == pytest.approx(report["means"][0]["PESQ"])


def test_without_opus_tools_it_says_so_and_scores_the_checkpoint(eval_dir, tmp_path, capsys, monkeypatch):
    data, best, flags = eval_dir
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert evaluate.main([f"runs:/{best.info.run_id}/checkpoint/best.pt", str(data), *flags]) == 0
    assert "reference: opus-tools is not installed (apt-get install opus-tools)" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "out" / "files.csv")))
    assert {row["codec"] for row in rows} == {"checkpoint"}


@needs_opus
def test_opus_is_scored_at_each_bitrate_asked_for(eval_dir, smoke_search, tmp_path):
    data, best, flags = eval_dir
    asked = [f"runs:/{best.info.run_id}/checkpoint/best.pt", str(data), "--opus-kbps", "6", "12", *flags]
    assert evaluate.main(asked) == 0
    table = {row["codec"]: row for row in csv.DictReader(open(tmp_path / "out" / "means.csv"))}
    assert list(table) == ["checkpoint", "opus 6 kbps", "opus 12 kbps"]
    assert float(table["opus 6 kbps"]["kbps"]) < float(table["opus 12 kbps"]["kbps"])
    metrics = smoke_search.client.get_run(best.info.run_id).data.metrics
    assert metrics["eval/opus_6kbps/kbps"] == pytest.approx(float(table["opus 6 kbps"]["kbps"]))


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope.pt", "."], "checkpoint 'nope.pt' does not exist"),
        ([None, "/nonexistent/audio"], "'/nonexistent/audio' does not exist"),
        ([None, ".", "--opus-kbps", "5"], "--opus-kbps 5: Opus takes at least 6 kbps"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(args, message, eval_dir, capsys):
    data, best, flags = eval_dir
    args = [a or f"runs:/{best.info.run_id}/checkpoint/best.pt" for a in args]
    assert evaluate.main([*args, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


SOUNDS = Path("/usr/share/asterisk/sounds")


@pytest.mark.skipif(not SOUNDS.is_dir(), reason="apt-get install asterisk-core-sounds-{en,es}-g722")
def test_the_real_speech_corpus_is_built_with_a_held_out_split_by_file(tmp_path):
    script = [sys.executable, str(ROOT / "scripts" / "make_speech_corpus.py")]
    done = subprocess.run([*script, "--out", str(tmp_path / "speech")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    prompts = sorted(p for p in SOUNDS.rglob("*.g722") if p.relative_to(SOUNDS).parts[0].endswith("_Allison"))
    unseen = sorted((tmp_path / "speech" / "unseen").rglob("*.flac"))  # other voices, if installed
    assert len(unseen) == len(list(SOUNDS.rglob("*.g722"))) - len(prompts)
    train, heldout = (sorted((tmp_path / "speech" / side).rglob("*.flac")) for side in ("train", "heldout"))
    assert len(train) + len(heldout) == len(prompts) and 0.1 < len(heldout) / len(prompts) < 0.2
    assert not {p.relative_to(tmp_path / "speech" / "train") for p in train} & {
        p.relative_to(tmp_path / "speech" / "heldout") for p in heldout
    }
    # training's own validation split of train/ (10% by file) is not emptied by the held-out split
    names = [str(p.relative_to(tmp_path / "speech" / "train")) for p in train]
    assert 0.05 < sum(is_valid_file(n, 0.1) for n in names) / len(names) < 0.15
    info = sf.info(heldout[0])
    assert info.samplerate == 16000 and info.channels == 1
    minutes = sum(sf.info(p).duration for p in train + heldout) / 60
    assert 45 < minutes < 65 and "voices: en_US_f_Allison, es_MX_f_Allison" in done.stdout


def test_a_train_codec_checkpoint_logs_its_evaluation_to_its_own_run(audio_dir, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    import train_codec

    from .test_cli import tiny_flags

    ckpt, db = tmp_path / "ckpt", tmp_path / "mlflow.db"
    flags = ["--data_dir", str(audio_dir), "--cache_dir", str(tmp_path / "cache"), "--tracking_uri", str(db)]
    assert train_codec.main([*flags, "--checkpoint_dir", str(ckpt), *tiny_flags()]) == 0
    out = ["--reference", "none", "--out", str(tmp_path / "out")]
    assert evaluate.main([str(ckpt / "best.pt"), str(audio_dir), *out]) == 0
    run_id = json.loads((ckpt / train_codec.RUN_FILE).read_text())["runs"][train_codec.RUN]
    assert f"eval/ metrics logged to run {run_id}" in capsys.readouterr().out  # the store it was trained in
    metrics = MlflowClient(f"sqlite:///{db}").get_run(run_id).data.metrics
    assert {"eval/stoi", "eval/snr_db", "eval/kbps"} <= set(metrics) and not any("opus" in k for k in metrics)


@needs_opus
def test_a_codec_trained_with_quantizer_dropout_is_judged_at_every_bitrate_it_serves(audio_dir, tmp_path):
    import yaml
    from mlflow.tracking import MlflowClient

    import train_codec

    from .conftest import TINY

    config = tmp_path / "dropout.yaml"  # a config file: TINY (2 codebooks, 8 kbps each) with dropout
    config.write_text(yaml.safe_dump({**TINY, "strides": [2, 2], "num_epochs": 2, "quantizer_dropout": 0.5}))
    ckpt, db = tmp_path / "ckpt", tmp_path / "mlflow.db"
    flags = ["--data_dir", str(audio_dir), "--cache_dir", str(tmp_path / "cache"), "--tracking_uri", str(db)]
    assert train_codec.main([*flags, "--checkpoint_dir", str(ckpt), "--config", str(config)]) == 0
    assert evaluate.main([str(ckpt / "best.pt"), str(audio_dir), "--out", str(tmp_path / "out")]) == 0
    table = {row["codec"]: row for row in csv.DictReader(open(tmp_path / "out" / "means.csv"))}
    assert list(table) == ["checkpoint, 1 of 2 codebooks", "checkpoint", "opus 8 kbps", "opus 16 kbps"]
    assert 8 <= float(table["checkpoint, 1 of 2 codebooks"]["kbps"]) < 8.1
    run_id = json.loads((ckpt / train_codec.RUN_FILE).read_text())["runs"][train_codec.RUN]
    run = MlflowClient(f"sqlite:///{db}").get_run(run_id)
    assert run.data.params["quantizer_dropout"] == "0.5" and run.data.params["config"] == str(config)
    assert {"eval/codebooks_1/pesq", "eval/pesq", "eval/opus_8kbps/pesq", "val/codebooks_1/snr_db"} <= set(
        run.data.metrics
    )
    assert evaluate.main([str(ckpt / "best.pt"), str(audio_dir), "--codebooks", "3"]) == 2
