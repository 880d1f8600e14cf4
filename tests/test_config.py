"""Config dataclasses: every bad value names its field; JSON round trips; unknown keys refused."""

import pytest

from qpa.config import AdapterConfig, DataConfig, QPAConfig, RunConfig, TrainConfig, field_help


@pytest.mark.parametrize(
    "make,field,value",
    [
        (AdapterConfig, "rank", 0),
        (AdapterConfig, "rank", -3),
        (AdapterConfig, "rank", 2.5),
        (AdapterConfig, "method", "dora"),
        (AdapterConfig, "lora_alpha", 0),
        (AdapterConfig, "lora_dropout", 1.5),
        (QPAConfig, "chunk_size", 0),
        (QPAConfig, "chunk_size", -1),
        (QPAConfig, "depth", 0),
        (QPAConfig, "n_qubits", -1),
        (QPAConfig, "entangler", "star"),
        (QPAConfig, "activation", "softmax"),
        (QPAConfig, "hidden_sizes", ()),
        (QPAConfig, "hidden_sizes", (32, 0)),
        (TrainConfig, "steps", 0),
        (TrainConfig, "lr", -1e-3),
        (TrainConfig, "lr", float("nan")),
        (TrainConfig, "batch_size", "8"),
        (TrainConfig, "cache_backbone", "yes"),
        (DataConfig, "max_length", 2),
        (DataConfig, "val_fraction", 0.0),
        (DataConfig, "packing", "random"),
    ],
)
def test_bad_value_names_the_field(make, field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        make(**{field: value})


def test_json_round_trip_and_coercion():
    config = RunConfig.from_dict(
        {"adapter": {"target_modules": "q_proj, v_proj", "rank": 8.0}, "train": {"lr": 1}}
    )
    assert config.adapter.target_modules == ("q_proj", "v_proj") and config.adapter.rank == 8
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert RunConfig.from_json(config.to_json()) == config


def test_unknown_keys_and_bad_json_refused():
    with pytest.raises(ValueError, match="Unknown TrainConfig field.*`stepz`"):
        RunConfig.from_dict({"train": {"stepz": 3}})
    with pytest.raises(ValueError, match="not valid JSON"):
        RunConfig.from_json("{nope")


def test_method_default_learning_rates():
    assert RunConfig().resolved().train.lr == 1e-2
    assert RunConfig(adapter=AdapterConfig(method="lora")).resolved().train.lr == 1e-2
    assert RunConfig(train=TrainConfig(lr=5e-3)).resolved().train.lr == 5e-3


def test_every_field_has_help():
    for section in (AdapterConfig, QPAConfig, DataConfig, TrainConfig):
        assert all(meta["help"] for meta in field_help(section).values())
