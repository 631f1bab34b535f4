import dataclasses
import logging
import pickle
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import tune_codec.data.corpus as corpus_mod
from tune_codec.config import make_config
from tune_codec.data.corpus import AUDIO, META, decode, load_corpus
from tune_codec.data.segments import load_data, split
from tune_codec.errors import DataError

from .conftest import TINY, write_speechlike

CFG = make_config({"sample_rate": 8000, "segment_seconds": 0.25, "valid_fraction": 0.3, "strides": (2, 2)})


def test_reads_every_format_recursively_mixes_down_and_resamples(audio_dir, tmp_path):
    corpus = load_corpus(audio_dir, 8000, tmp_path / "cache")
    assert sorted(corpus.names) == sorted(
        ["c0.ogg", *(f"spk1/a{i}.wav" for i in range(3)), *(f"spk2/deep/b{i}.flac" for i in range(3))]
    )
    for i, name in enumerate(corpus.names):
        audio = corpus.audio(i)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert len(audio) == pytest.approx(8000, abs=2), name  # 1 s, 16 kHz stereo flac included


def test_split_is_by_file_deterministic_and_disjoint(audio_dir, tmp_path):
    a = load_data(audio_dir, CFG, tmp_path / "cache")
    b = load_data(audio_dir, CFG, tmp_path / "cache")
    assert a.train_files == b.train_files and a.valid_files == b.valid_files
    assert not set(a.train_files) & set(a.valid_files)
    assert len(a.train_files) + len(a.valid_files) == 7
    assert a.train.read().shape[1] == CFG.segment_samples and a.valid.read().shape[1] == CFG.segment_samples
    assert len(a.train) >= 4 * len(a.train_files) - len(a.train_files)  # 4 segments a file, few silent


def test_a_validation_cap_keeps_whole_files_in_a_fixed_order_and_trains_on_the_rest(tmp_path):
    for i in range(20):
        write_speechlike(tmp_path / "corpus" / f"f{i:02d}.wav", 1.0, 8000, seed=i)
    wide = dataclasses.replace(CFG, valid_fraction=0.5)
    full = load_data(tmp_path / "corpus", wide, tmp_path / "cache")
    capped = load_data(tmp_path / "corpus", dataclasses.replace(wide, valid_max_seconds=2.5), tmp_path / "c")
    assert len(full.valid_files) > 3 and capped.valid_files == full.valid_files[:3]  # 1 s each: 3 make 2.5 s
    assert sorted(capped.train_files + capped.valid_files) == sorted(full.train_files + full.valid_files)
    seconds = len(capped.valid) * wide.segment_samples / wide.sample_rate
    assert 2.5 <= seconds < 3.5


def test_second_load_reads_the_cache_not_the_audio(audio_dir, tmp_path, monkeypatch):
    first = load_corpus(audio_dir, 8000, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob(f"corpus-*/{META}"))) == 1

    def no_decoding(*_):
        raise AssertionError("decoded again")

    monkeypatch.setattr(corpus_mod, "read_mono", no_decoding)
    second = load_corpus(audio_dir, 8000, tmp_path / "cache")
    assert second.names == first.names
    for i in range(len(first.names)):
        np.testing.assert_array_equal(first.audio(i), second.audio(i))


def test_changed_files_invalidate_the_cache(audio_dir, tmp_path):
    load_corpus(audio_dir, 8000, tmp_path / "cache")
    write_speechlike(audio_dir / "new.wav", 1.0, 8000, seed=99)
    assert "new.wav" in load_corpus(audio_dir, 8000, tmp_path / "cache").names


def test_no_audio_is_an_error_naming_the_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(DataError, match=f"no audio files under '{tmp_path}'"):
        load_corpus(tmp_path, 8000, tmp_path / "cache")
    with pytest.raises(DataError, match="does not exist"):
        load_corpus(tmp_path / "missing", 8000, tmp_path / "cache")


def test_bad_files_are_skipped_and_listed(audio_dir, tmp_path, caplog):
    good = audio_dir / "spk1" / "a0.wav"
    (audio_dir / "truncated.wav").write_bytes(good.read_bytes()[:30])  # header cut short
    (audio_dir / "empty.wav").write_bytes(b"")
    sf.write(audio_dir / "nan.wav", np.full(8000, np.nan, dtype=np.float32), 8000, subtype="FLOAT")
    write_speechlike(audio_dir / "short.wav", 0.1, 8000)
    corpus = load_corpus(audio_dir, 8000, tmp_path / "cache")
    assert set(corpus.skipped) == {"truncated.wav", "empty.wav", "nan.wav"}
    assert "NaN/Inf" in corpus.skipped["nan.wav"]
    with caplog.at_level(logging.WARNING):
        data = split(corpus, CFG)
    assert "short.wav" not in data.train_files + data.valid_files
    log = caplog.text
    assert "skipped truncated.wav" in log and "skipped nan.wav" in log
    assert "1 file(s) shorter than one segment" in log and "short.wav" in log


def test_silent_segments_are_dropped(tmp_path):
    root = tmp_path / "c"
    for i in range(3):
        write_speechlike(root / f"f{i}.wav", 1.0, 8000, seed=i)
    sf.write(root / "silence.wav", np.zeros(8000, dtype=np.float32), 8000)
    data = load_data(root, CFG, tmp_path / "cache")
    assert "silence.wav" not in data.train_files + data.valid_files
    rms = np.sqrt((np.concatenate([data.train.read(), data.valid.read()]) ** 2).mean(axis=1))
    assert rms.min() > 10 ** (CFG.silence_db / 20)


def test_one_usable_file_cannot_be_split(tmp_path):
    write_speechlike(tmp_path / "only.wav", 1.0, 8000)
    with pytest.raises(DataError, match="1 usable audio file"):
        load_data(tmp_path, CFG, tmp_path / "cache")


def test_decode_removes_dc_offset_and_handles_pcm_depths(tmp_path):
    x = 0.3 * np.sin(np.arange(8000) / 10) + 0.2
    for subtype in ("PCM_U8", "PCM_24", "FLOAT"):
        path = tmp_path / f"{subtype}.wav"
        sf.write(path, x, 8000, subtype=subtype)
        y = decode(path, 8000)
        assert abs(y.mean()) < 1e-3 and np.abs(y).max() == pytest.approx(0.3, abs=0.02), subtype


def tone(seconds: float, sample_rate: int, channels: int = 1, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = level * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 220 * t)
    return np.stack([x * (1 - 0.1 * c) for c in range(channels)], 1) if channels > 1 else x


# every kind of file a corpus can hold that can be used: name -> (samples, sample rate, soundfile subtype)
USABLE = {
    "pcm_u8.wav": (tone(1, 16000), 16000, "PCM_U8"),
    "pcm_24.wav": (tone(1, 16000), 16000, "PCM_24"),
    "float32.wav": (tone(1, 16000), 16000, "FLOAT"),
    "float64.wav": (tone(1, 16000), 16000, "DOUBLE"),
    "stereo.flac": (tone(1, 16000, channels=2), 16000, "PCM_16"),
    "surround_5_1.wav": (tone(1, 48000, channels=6), 48000, "PCM_16"),
    "dc_offset.wav": (tone(1, 16000) + 0.4, 16000, "FLOAT"),
    "clipped.wav": (np.clip(4 * tone(1, 16000), -1, 1), 16000, "PCM_16"),
    **{f"rate_{sr}.wav": (tone(1, sr), sr, "PCM_16") for sr in (8000, 11025, 22050, 44100, 48000, 96000)},
}
# and every kind that cannot: name -> how to make it, the reason given
UNUSABLE = {
    "zero_length.wav": (lambda p: sf.write(p, np.zeros(0), 16000), "no samples"),
    "truncated.flac": (lambda p: p.write_bytes(_flac_bytes(p)[:200]), "unreadable"),
    "corrupt.wav": (lambda p: p.write_bytes(b"RIFF" + bytes(range(256)) * 4), "unreadable"),
    "text.wav": (lambda p: p.write_text("this is not audio\n"), "unreadable"),
    "nan.wav": (lambda p: sf.write(p, np.full(8000, np.nan), 16000, subtype="FLOAT"), "NaN/Inf"),
    "inf.wav": (lambda p: sf.write(p, np.full(8000, np.inf), 16000, subtype="FLOAT"), "NaN/Inf"),
}


def _flac_bytes(path):
    sf.write(path, tone(1, 16000), 16000, format="FLAC")
    return path.read_bytes()


def test_every_usable_kind_of_file_trains_and_every_other_is_skipped_with_its_reason(tmp_path, caplog):
    from tune_codec.training.train import train

    root = tmp_path / "corpus"
    root.mkdir()
    for name, (samples, sample_rate, subtype) in USABLE.items():
        sf.write(root / name, samples, sample_rate, subtype=subtype)
    for name, (make, _) in UNUSABLE.items():
        make(root / name)
    sf.write(root / "shorter_than_a_segment.wav", tone(0.1, 16000), 16000)
    (root / "readme.txt").write_text("not looked at")

    config = make_config({**TINY, "sample_rate": 16000, "segment_seconds": 0.25, "num_epochs": 1})
    with caplog.at_level(logging.WARNING):
        data = load_data(root, config, tmp_path / "cache")
    assert sorted(data.train_files + data.valid_files) == sorted(USABLE)
    for name, (_, reason) in UNUSABLE.items():
        assert f"skipped {name}: " in caplog.text and reason in caplog.text.split(f"skipped {name}: ")[1]
    assert "shorter_than_a_segment.wav" in caplog.text
    corpus = load_corpus(root, 16000, tmp_path / "cache")
    for name in USABLE:  # mono, 16 kHz, 1 s, no DC, at the level it was written
        audio = corpus.audio(corpus.names.index(name))
        assert audio.ndim == 1 and len(audio) == pytest.approx(16000, abs=2), name
        assert abs(audio.mean()) < 0.01 and 0.1 < np.abs(audio).max() <= 1.5, name
    metrics = train(config, data, checkpoint_dir=tmp_path / "ckpt", quiet=True)
    assert np.isfinite(metrics["loss/total"]) and np.isfinite(metrics["val/snr_db"])


def test_decoding_in_several_processes_writes_the_same_cache_as_in_one(audio_dir, tmp_path):
    one = load_corpus(audio_dir, 8000, tmp_path / "one", processes=1)
    two = load_corpus(audio_dir, 8000, tmp_path / "two", processes=2)
    assert (one.path.read_bytes(), (one.folder / META).read_text()) == (
        two.path.read_bytes(),
        (two.folder / META).read_text(),
    )
    assert one.path.stat().st_size == 2 * sum(one.lengths)  # int16, no gaps


def test_the_cache_keeps_16_bit_audio_exactly_and_louder_float_audio_to_16_bits(tmp_path):
    root = tmp_path / "c"
    write_speechlike(root / "pcm16.wav", 1.0, 8000, seed=1)
    loud = 3 * np.sin(np.arange(8000) / 7) + 0.5
    sf.write(root / "loud.wav", loud, 8000, subtype="FLOAT")
    corpus = load_corpus(root, 8000, tmp_path / "cache")
    for i, name in enumerate(corpus.names):
        exact = decode(root / name, 8000)
        if name == "pcm16.wav":
            np.testing.assert_array_equal(corpus.audio(i), exact)
        else:  # peak 3.5: scaled to fit, off by at most half a step of 3.5 / 32767
            assert np.abs(corpus.audio(i) - exact).max() <= 3.5 / 32767
            assert np.abs(corpus.audio(i)).max() == pytest.approx(3.0, abs=1e-3)


def test_an_interrupted_decode_is_done_again(audio_dir, tmp_path):
    first = load_corpus(audio_dir, 8000, tmp_path / "cache")
    (first.folder / META).unlink()
    first.path.write_bytes(b"")  # what a kill between the two files leaves
    again = load_corpus(audio_dir, 8000, tmp_path / "cache")
    assert again.path.stat().st_size == 2 * sum(again.lengths) > 0 and (again.folder / AUDIO).exists()


def test_segments_are_positions_in_the_cache_small_to_send_and_read_in_another_process(audio_dir, tmp_path):
    data = load_data(audio_dir, CFG, tmp_path / "cache")
    sent = pickle.dumps(data)
    assert len(sent) < 0.1 * (len(data.train) + len(data.valid)) * CFG.segment_samples * 4
    code = "import pickle, sys; d = pickle.load(sys.stdin.buffer); "
    code += "sys.stdout.buffer.write(d.train.read([2, 0]).tobytes())"
    out = subprocess.run([sys.executable, "-c", code], input=sent, capture_output=True, check=True).stdout
    np.testing.assert_array_equal(np.frombuffer(out, np.float32).reshape(2, -1), data.train.read()[[2, 0]])
