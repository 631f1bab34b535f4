"""The codec itself: SEANet encoder/decoder, residual VQ, losses, discriminators, balancer (pure torch)."""
