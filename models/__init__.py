"""The emotion-conditioned music generator, a PyTorch model."""
