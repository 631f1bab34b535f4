import torch

from tune_codec.codec.model import Codec
from tune_codec.config import make_config


def test_output_shape_equals_input_shape_and_codes_are_per_frame(tiny_config):
    torch.manual_seed(0)
    model = Codec(tiny_config)
    x = torch.randn(3, 1, tiny_config.segment_samples)
    out = model(x)
    assert out.audio.shape == x.shape
    assert out.codes.shape == (3, tiny_config.n_codebooks, tiny_config.segment_samples // tiny_config.hop)


def test_encode_then_decode_equals_the_forward_pass(tiny_config):
    torch.manual_seed(0)
    model = Codec(tiny_config)
    x = torch.randn(2, 1, tiny_config.segment_samples)
    model.train()(x)  # initialise the codebooks
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.decode(model.encode(x)), model(x).audio)


def test_odd_strides_keep_lengths_exact():
    c = make_config(
        {"strides": (3, 5), "channels": 2, "latent_dim": 4, "codebook_size": 4, "segment_seconds": 0.01}
    )
    x = torch.randn(1, 1, c.segment_samples)
    assert Codec(c)(x).audio.shape == x.shape
