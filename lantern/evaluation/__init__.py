"""Scoring a trained model on held-out text: loss, perplexity, bits per byte, accuracy."""
