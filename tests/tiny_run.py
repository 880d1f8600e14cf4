"""A run config small enough to train in a second: tiny-llama, 24 chatterbot examples, 2 steps."""

from qpa.config import AdapterConfig, DataConfig, ModelConfig, QPAConfig, RunConfig, TrainConfig

TINY_RUN = RunConfig(
    model=ModelConfig(model="tiny-llama"),
    adapter=AdapterConfig(rank=2),
    qpa=QPAConfig(chunk_size=64, depth=2),
    data=DataConfig(topics=("ai",), max_length=48, max_examples=24),
    train=TrainConfig(steps=2, eval_every=2, batch_size=4),
)
