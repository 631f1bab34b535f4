import torch

from tune_codec.codec.quantize import Codebook, ResidualVQ, kmeans


def clustered(n=512, dim=4, k=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 5
    return centres[torch.randint(k, (n,), generator=g)] + 0.01 * torch.randn(n, dim, generator=g), centres


def test_kmeans_finds_well_separated_clusters():
    torch.manual_seed(0)
    x, centres = clustered()
    found, counts = kmeans(x, 8, iters=20)
    # every true centre has a centroid next to it (k-means can split one and merge two, rarely)
    nearest = torch.cdist(centres, found).min(dim=1).values
    assert (nearest < 0.1).sum() >= 7
    assert counts.sum() == len(x)


def test_decoding_the_codes_reproduces_the_quantized_output():
    torch.manual_seed(0)
    vq = ResidualVQ(dim=8, n_codebooks=3, size=16)
    z = torch.randn(2, 8, 10)
    vq.train()
    vq(z)  # k-means init
    vq.eval()
    q = vq(z)
    assert q.codes.shape == (2, 3, 10) and q.quantized.shape == z.shape
    torch.testing.assert_close(vq.decode(q.codes), q.quantized)


def test_more_stages_quantize_more_finely():
    torch.manual_seed(0)
    z = torch.randn(4, 8, 64)
    errors = []
    for n in (1, 2, 4):
        vq = ResidualVQ(dim=8, n_codebooks=n, size=32, kmeans_iters=10).train()
        vq(z)
        errors.append((vq.eval()(z).quantized - z).pow(2).mean().item())
    assert errors[0] > errors[1] > errors[2]


def test_gradient_passes_straight_through_the_quantizer():
    torch.manual_seed(0)
    vq = ResidualVQ(dim=4, n_codebooks=2, size=8).eval()
    z = torch.randn(2, 4, 5, requires_grad=True)
    w = torch.randn(2, 4, 5)
    (vq(z).quantized * w).sum().backward()
    torch.testing.assert_close(z.grad, w)


def test_commitment_loss_pulls_the_encoder_toward_its_codes():
    torch.manual_seed(0)
    vq = ResidualVQ(dim=4, n_codebooks=1, size=8).train()
    z = torch.randn(2, 4, 5, requires_grad=True)
    q = vq(z)
    q.commit_loss.backward()
    codes = vq.stages[0].codewords[q.codes[:, 0]].permute(0, 2, 1)  # (B, D, T)
    expected = 2 * (z.detach() - codes) / z.numel()
    torch.testing.assert_close(z.grad, expected)


def test_ema_moves_codewords_toward_their_vectors():
    book = Codebook(dim=2, size=2, decay=0.5, dead_threshold=0.0, kmeans_iters=0)
    book.codewords.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    book.embed_sum.copy_(book.codewords)
    book.initialised.fill_(True)
    x = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    book.update(x, book.nearest(x))
    assert 0.5 < book.codewords[0, 0] < 1.0  # half way from 0 to 1, up to smoothing
    torch.testing.assert_close(book.codewords[1], torch.tensor([10.0, 10.0]), atol=1e-3, rtol=0)


def test_dead_codes_are_restarted_on_batch_vectors():
    torch.manual_seed(0)
    book = Codebook(dim=2, size=4, decay=0.9, dead_threshold=0.5, kmeans_iters=0)
    book.codewords.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0], [100.0, -100.0]]))
    book.embed_sum.copy_(book.codewords)
    book.cluster_size.fill_(0.1)  # unused for a long time
    book.initialised.fill_(True)
    x = torch.randn(64, 2) * 0.1
    book.update(x, book.nearest(x))
    # the far codes now sit on vectors of the batch, so they can win assignments again
    assert book.codewords.abs().max() < 1.0
    assert book.dead_codes() == 0
