import base64
import re

import numpy as np
import soundfile as sf

from tune_codec.training.samples import PAGE, SPECTROGRAM, WAVEFORM, log_power, write_samples

from .conftest import tones


def test_the_listening_page_embeds_each_clip_side_by_side_and_both_figures(tmp_path):
    x = tones(3, 4000, 8000, seed=0)
    y = 0.2 * x  # a collapsed output: the right shape, a fifth of the level
    write_samples(tmp_path, x, y, 8000, "epoch 7: range ratio 0.20 <quiet>")
    page = (tmp_path / PAGE).read_text()
    assert "<title>epoch 7: range ratio 0.20 &lt;quiet&gt;</title>" in page
    players = re.findall(r'<audio controls preload="metadata" src="data:audio/[\w-]+;base64,([^"]+)">', page)
    assert len(players) == 6  # input k and output k in one table row, k = 0, 1, 2
    for k in range(3):
        for i, name in ((2 * k, f"input_{k}.wav"), (2 * k + 1, f"output_{k}.wav")):
            assert base64.b64decode(players[i]) == (tmp_path / name).read_bytes()
    for figure in (WAVEFORM, SPECTROGRAM):
        embedded = base64.b64encode((tmp_path / figure).read_bytes()).decode()
        assert f'src="data:image/png;base64,{embedded}"' in page
    # nothing on the page points at a file: MLflow shows it from a blob URL, where relative links break
    assert not re.search(r'(src|href)="(?!data:)', page)
    out, rate = sf.read(tmp_path / "output_1.wav")
    assert rate == 8000 and np.abs(out).max() < 0.3 * np.abs(x[1]).max()


def test_spectrogram_power_drops_by_the_level_lost():
    x = tones(1, 4000, 8000, seed=1)[0]
    loud, quiet = log_power(x), log_power(0.1 * x)
    assert loud.shape == (129, (4000 - 256) // 64 + 1)
    peak = loud > loud.max() - 30  # bins that hold the tones, not the numerical floor
    assert np.allclose(loud[peak] - quiet[peak], 20, atol=0.01)  # 10x quieter = 20 dB
