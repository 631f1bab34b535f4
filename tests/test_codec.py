import numpy as np
import pytest
import soundfile as sf
import torch

from tune_codec.data.corpus import decode as read_audio
from tune_codec.evaluation import codes as codec

from .conftest import write_speechlike


@pytest.fixture(scope="module")
def best(smoke_search):
    """The smoke search's best trial's checkpoint as an MLflow URI, and the flag that finds its store."""
    run = max(smoke_search.children, key=lambda c: c.data.metrics["val/best_snr_db"])
    return f"runs:/{run.info.run_id}/checkpoint/best.pt", ["--tracking-uri", str(smoke_search.db)]


def cli(command: str, checkpoint: str, source, target, store: list[str]) -> int:
    return codec.main([command, checkpoint, str(source), str(target), *store])


def test_encode_then_decode_a_wav_is_the_codec_applied_to_it(best, smoke_search, tmp_path, capsys):
    checkpoint, store = best
    # 16 kHz stereo, 1.3 s: resampled to the codec's 8 kHz, mixed to mono, not a whole number of frames
    source = write_speechlike(tmp_path / "in.wav", 1.3, 16000, channels=2, seed=5)
    assert cli("encode", checkpoint, source, tmp_path / "in.codes", store) == 0
    printed = capsys.readouterr().out
    assert "(16000 Hz, 2-channel)" in printed and "1.30 s at 8000 Hz, 2 x 2600 codes" in printed
    assert "bitrate 16 kbps (8x compression of 16-bit PCM)" in printed
    assert cli("decode", checkpoint, tmp_path / "in.codes", tmp_path / "out.wav", store) == 0
    assert "decoded" in capsys.readouterr().out
    out, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == 8000 and out.shape == (10400,)

    model, _ = codec.open_checkpoint(checkpoint, str(smoke_search.db))
    x = torch.from_numpy(read_audio(source, 8000))[None, None]
    with torch.no_grad():
        expected = model(x).audio[0, 0].numpy()
    assert np.abs(out - np.clip(expected, -1, 1)).max() <= 1 / 2**15  # equal up to the 16-bit wav


def test_codes_are_refused_by_another_checkpoint_and_files_that_are_not_codes(
    best, smoke_search, tmp_path, capsys
):
    checkpoint, store = best
    other = next(c for c in smoke_search.children if c.info.run_id not in checkpoint)
    source = write_speechlike(tmp_path / "in.flac", 0.5, 8000, seed=6)
    assert cli("encode", checkpoint, source, tmp_path / "a.codes", store) == 0
    capsys.readouterr()
    other_checkpoint = f"runs:/{other.info.run_id}/checkpoint/best.pt"
    assert cli("decode", other_checkpoint, tmp_path / "a.codes", tmp_path / "b.wav", store) == 2
    err = capsys.readouterr().err
    assert "was encoded by model" in err and "not by this checkpoint" in err and err.count("\n") == 1
    assert not (tmp_path / "b.wav").exists()
    assert cli("decode", checkpoint, source, tmp_path / "b.wav", store) == 2
    assert "is not a codes file written by `encode`" in capsys.readouterr().err
    assert codec.main(["encode", str(source), str(source), str(tmp_path / "c.codes")]) == 2
    assert "is not a tune-codec best.pt or last.pt" in capsys.readouterr().err


def test_long_files_are_coded_in_chunks_to_the_same_length(best, tmp_path, monkeypatch, capsys):
    checkpoint, store = best
    monkeypatch.setattr(codec, "CHUNK_SECONDS", 1)  # 2.7 s: three chunks each way
    source = write_speechlike(tmp_path / "in.wav", 2.7, 8000, seed=7)
    assert cli("encode", checkpoint, source, tmp_path / "a.codes", store) == 0
    assert cli("decode", checkpoint, tmp_path / "a.codes", tmp_path / "a.wav", store) == 0
    with np.load(tmp_path / "a.codes") as z:
        assert z["codes"].dtype == np.uint8 and z["codes"].shape == (2 * 5400 * 4 // 8,)  # 4 bits a code
    out, _ = sf.read(tmp_path / "a.wav")
    assert out.shape == (21600,) and np.isfinite(out).all() and np.abs(out).max() > 0.01


@pytest.mark.parametrize("size", [2, 16, 1000, 1024])
def test_codes_are_packed_at_log2_of_the_codebook_size_bits_and_unpacked_exactly(size):
    bits = int(np.ceil(np.log2(size)))
    codes = np.random.default_rng(size).integers(0, size, (3, 101))
    packed = codec.pack(codes, bits)
    assert packed.dtype == np.uint8 and len(packed) == -(-3 * 101 * bits // 8)
    assert np.array_equal(codec.unpack(packed, bits, (3, 101)), codes)


def test_encoding_fewer_codebooks_halves_the_bitrate_and_decodes_from_them(
    best, smoke_search, tmp_path, capsys
):
    checkpoint, store = best
    source = write_speechlike(tmp_path / "in.wav", 1.3, 8000, seed=7)
    assert (
        codec.main(
            ["encode", checkpoint, str(source), str(tmp_path / "in.codes"), "--codebooks", "1", *store]
        )
        == 0
    )
    assert "1 x 2600 codes; bitrate 8 kbps (16x compression" in capsys.readouterr().out
    assert cli("decode", checkpoint, tmp_path / "in.codes", tmp_path / "out.wav", store) == 0
    out, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    model, _ = codec.open_checkpoint(checkpoint, str(smoke_search.db))
    with torch.no_grad():
        expected = model(torch.from_numpy(read_audio(source, 8000))[None, None], 1).audio[0, 0].numpy()
    assert np.abs(out - np.clip(expected, -1, 1)).max() <= 1 / 2**15
    assert (
        codec.main(["encode", checkpoint, str(source), str(tmp_path / "x.codes"), "--codebooks", "3", *store])
        == 2
    )
    assert "--codebooks 3: this codec has 1 to 2 codebooks" in capsys.readouterr().err
