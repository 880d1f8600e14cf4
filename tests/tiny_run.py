"""A run small enough to train in a second: as a config (tiny-llama, 24 chatterbot examples,
2 steps) and as the app's launch form (Design and Train fields by name)."""

from qpa.config import AdapterConfig, DataConfig, ModelConfig, QPAConfig, RunConfig, TrainConfig

TINY_RUN = RunConfig(
    model=ModelConfig(model="tiny-llama"),
    adapter=AdapterConfig(rank=2),
    qpa=QPAConfig(chunk_size=64, depth=2),
    data=DataConfig(topics=("ai",), max_length=48, max_examples=24),
    train=TrainConfig(steps=2, eval_every=2, batch_size=4),
)


def tiny_form(**overrides) -> dict:
    """The app's form for a 3-step QPA run of tiny-llama on 40 chatterbot `ai` examples."""
    from app.handlers import data, shape

    basic = ("tiny-llama", ["lm_head"], 2, 128, 0, 2, "16,16", "ladder")
    form = {**shape.DEFAULTS, **dict(zip(shape.BASIC, basic, strict=True))}
    form.update(plan="QPA only", steps=3, batch_size=4, lr=0, eval_every=2, patience=0, max_length=64,
                max_examples=40, seed=0, loss_on=TrainConfig().loss_on,
                perplexity=TrainConfig().perplexity, source=data.SOURCES[0], topics=["ai"],
                upload=None)  # fmt: skip
    return {**form, **overrides}
