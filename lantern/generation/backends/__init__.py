"""Engines that run a model for the text fronts besides LANTERN's own PyTorch core
(`lantern.generation.engine.TorchEngine`): llama.cpp for GGUF files."""
