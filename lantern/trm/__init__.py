"""LLM-TRM: compress a host's hidden states, predict its post-thinking state with a tiny
recursive model, and answer through the host's latent slot without writing the thinking out."""
