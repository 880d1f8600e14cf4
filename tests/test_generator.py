"""The mapping model and chunked generation (paper Eq. 2, 5–8)."""

import math

import pytest
import torch

from qpa.config import PAPER_MAPPING, QPAConfig
from qpa.generator.mapping import MappingModel, basis_bits, postprocess, random_bits
from qpa.generator.qpa_generator import QPAGenerator, centered_output, qubits_needed


def test_basis_bits_match_pennylane_order():
    bits = basis_bits(3, 8)
    assert bits[5].tolist() == [1.0, -1.0, 1.0]  # 5 = 0b101, qubit 0 first
    assert bits.shape == (8, 3)


def test_random_bits_are_distinct_states():
    bits = random_bits(4, 10, torch.Generator().manual_seed(0))
    assert len({tuple(b.tolist()) for b in bits}) == 10


def test_postprocess_formula_and_finite_gradient_at_zero():
    p = torch.tensor([0.0, 0.25, 0.75, 0.0], dtype=torch.float64, requires_grad=True)
    x = postprocess(p, 0.1, 0.6, 0.15)
    raw = (0.6 * torch.tanh(0.1 * 2 * p.detach())).clamp_min(1e-12) ** 0.15
    torch.testing.assert_close(x.detach(), raw - raw.mean())
    x.pow(2).sum().backward()
    assert torch.isfinite(p.grad).all()


def test_mapping_layer_sizes_follow_official_code():
    m = MappingModel(7, (32, 64, 128, 128, 64, 32, 32), 2048)
    widths = [
        (x.in_features, x.out_features) for x in m.modules() if isinstance(x, torch.nn.Linear)
    ]
    assert widths[0] == (8, 32) and widths[-2] == (32, 32) and widths[-1] == (32, 2048)
    assert sum(p.numel() for p in m.body.parameters()) == 38_624


@pytest.mark.parametrize(
    "n_values,chunk,expected",
    [(204_100, 2048, 7), (1_032_192, 4096, 8), (10, 2048, 1), (4097, 4096, 1), (8193, 4096, 2)],
)
def test_qubits_needed(n_values, chunk, expected):
    assert qubits_needed(n_values, chunk) == expected


def test_generator_shape_centering_and_grads():
    torch.manual_seed(0)
    gen = QPAGenerator(1000, QPAConfig(chunk_size=64, depth=3))
    assert (gen.n_qubits, gen.n_chunks) == (4, 16)
    v = gen()
    assert v.shape == (1000,) and abs(v.mean().item()) < 1e-6
    v.pow(2).sum().backward()
    assert gen.circuit.angles.grad.abs().sum() > 0
    assert all(p.grad is not None for p in gen.parameters())


def test_more_qubits_allowed_fewer_refused():
    assert QPAGenerator(1000, QPAConfig(chunk_size=64, n_qubits=6)).n_qubits == 6
    with pytest.raises(ValueError, match=r"`n_qubits` = 3 .* use ≥ 4 qubits or a chunk size ≥ 125"):
        QPAGenerator(1000, QPAConfig(chunk_size=64, n_qubits=3))


def test_activation_breaks_the_affine_rank_ceiling():
    torch.manual_seed(0)
    plain = QPAGenerator(256 * 64, QPAConfig(chunk_size=256, depth=2, **PAPER_MAPPING))
    act = QPAGenerator(
        256 * 64, QPAConfig(chunk_size=256, depth=2, **{**PAPER_MAPPING, "activation": "tanh"})
    )
    rank = lambda g: torch.linalg.matrix_rank(g().detach().view(g.n_chunks, -1)).item()  # noqa: E731
    assert rank(plain) <= plain.n_qubits + 2
    assert rank(act) > plain.n_qubits + 2


def test_random_pairing_changes_every_call_matched_does_not():
    torch.manual_seed(0)
    matched = QPAGenerator(512, QPAConfig(chunk_size=32, depth=2))
    assert torch.equal(matched(), matched())
    rnd = QPAGenerator(512, QPAConfig(chunk_size=32, depth=2, pairing="random"))
    assert not torch.equal(rnd(), rnd())


def test_generated_count_is_exact_for_paper_gpt2():
    gen = QPAGenerator(204_100, QPAConfig(chunk_size=2048, depth=8, **PAPER_MAPPING))
    assert gen.param_counts() == {
        "circuit": 56,
        "mapping": 38_624,
        "last_layer": 67_584,
        "total": 106_264,
    }
    assert gen.n_chunks == math.ceil(204_100 / 2048) == 100


@pytest.mark.parametrize("n_values", [1000, 1024, 1, 63])
def test_centring_folded_into_the_bias_equals_subtracting_the_mean(n_values):
    torch.manual_seed(0)
    last = torch.nn.Linear(8, 64).double()
    features = torch.randn(16, 8, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(n_values, dtype=torch.float64)
    plain = last(features).reshape(-1)[:n_values]
    plain = plain - plain.mean()
    folded = centered_output(features, last, n_values)
    torch.testing.assert_close(folded, plain)
    inputs = (features, last.weight, last.bias)
    want = torch.autograd.grad((weights * plain).sum(), inputs)
    got = torch.autograd.grad((weights * folded).sum(), inputs)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize(
    ("activation", "fourier", "ceiling"), [("none", 0, 7), ("none", 3, 13), ("gelu", 0, 17)]
)
def test_generated_chunk_matrix_rank_reaches_the_stated_ceiling(activation, fourier, ceiling):
    config = QPAConfig(
        chunk_size=64, depth=2, hidden_sizes=(16, 16), activation=activation,
        fourier_features=fourier,
    )  # fmt: skip
    torch.manual_seed(0)
    gen = QPAGenerator(64 * 32, config)  # 32 chunks, N = 5
    assert gen.max_rank == ceiling
    with torch.no_grad():
        chunks = gen().view(gen.n_chunks, config.chunk_size).double()  # (32, 64)
    assert torch.linalg.matrix_rank(chunks, rtol=1e-5).item() == ceiling  # float32 noise above


def test_fourier_features_add_inputs_not_outputs():
    plain = QPAGenerator(4096, QPAConfig(chunk_size=128, depth=2, **PAPER_MAPPING))
    richer = QPAGenerator(
        4096, QPAConfig(chunk_size=128, depth=2, **{**PAPER_MAPPING, "fourier_features": 4})
    )
    grown = richer.param_counts()["mapping"] - plain.param_counts()["mapping"]
    assert grown == 8 * plain.config.hidden_sizes[0]  # 2·4 more inputs to the first layer
    assert richer().shape == plain().shape == (4096,)
