"""Base causal language models: the embedded default, shape presets, tiny test models."""
