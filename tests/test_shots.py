"""qpa.quantum.shots draws exact multinomial samples, reproducibly, with a straight-through gradient."""

import math

import pytest
import torch

from qpa.generator.circuit import QuantumCircuit
from qpa.quantum.shots import sample_counts, sample_probs
from qpa.quantum.statevector import circuit_probs


def test_counts_are_a_multinomial_sample():
    """Mean shots·p, variance shots·p(1−p), covariance −shots·p_i·p_j, over many draws."""
    probs = torch.tensor([0.05, 0.0, 0.45, 0.1, 0.2, 0.0, 0.15, 0.05], dtype=torch.float64)
    shots, draws = 50, 4000
    generator = torch.Generator().manual_seed(0)
    counts = torch.stack([sample_counts(probs, shots, generator) for _ in range(draws)])
    assert counts.dtype == torch.int64 and (counts.sum(1) == shots).all()
    assert (counts[:, probs == 0] == 0).all()
    mean = shots * probs
    cov = shots * (torch.diag(probs) - torch.outer(probs, probs))  # (8, 8)
    se = (cov.diagonal() / draws).sqrt()  # standard error of each mean
    assert ((counts.double().mean(0) - mean).abs() <= 5 * se + 1e-12).all()
    torch.testing.assert_close(counts.double().T.cov(), cov, atol=0.06 * shots * 0.25, rtol=0.1)


@pytest.mark.parametrize("shots", [1, 7, 10**6, 10**9])
def test_every_shot_is_counted_for_any_budget(shots):
    probs = circuit_probs(torch.rand(4, 6) * 6 - 3)  # float32: sums to 1 ± 1e-6
    counts = sample_counts(probs, shots)
    assert counts.sum().item() == shots and (counts >= 0).all()
    if shots == 10**9:  # relative error ≈ 1/sqrt(shots·p): tiny
        big = probs > 1e-3
        error = (counts[big] / shots - probs[big].double()).abs() / probs[big].double()
        assert error.max().item() < 5e-3


def test_unnormalised_and_negative_residue_probabilities():
    counts = sample_counts(torch.tensor([2.0, -1e-9, 0.0, 2.0]), 10_000)
    assert counts[1:3].tolist() == [0, 0] and counts.sum() == 10_000
    assert abs(counts[0].item() - 5_000) < 400


def test_manual_seed_makes_samples_repeatable():
    probs = circuit_probs(torch.rand(3, 5))
    torch.manual_seed(123)
    first = sample_counts(probs, 1000)
    torch.manual_seed(123)
    assert torch.equal(sample_counts(probs, 1000), first)
    assert not torch.equal(sample_counts(probs, 1000), first)  # a fresh draw differs


def test_straight_through_value_and_gradient():
    angles = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(16, dtype=torch.float64)
    exact = circuit_probs(angles)
    torch.manual_seed(0)
    estimate = sample_probs(exact, 500)
    torch.manual_seed(0)
    counts = sample_counts(exact, 500)
    torch.testing.assert_close(estimate.detach(), counts.double() / 500, rtol=0, atol=1e-15)
    (grad,) = torch.autograd.grad((weights * estimate).sum(), angles)
    (expected,) = torch.autograd.grad((weights * circuit_probs(angles)).sum(), angles)
    torch.testing.assert_close(grad, expected)


def test_estimate_is_unbiased_and_shrinks_with_shots():
    probs = circuit_probs(torch.rand(2, 3, dtype=torch.float64) * 6 - 3)
    generator = torch.Generator().manual_seed(1)
    errors = {}
    for shots in (100, 10_000):
        estimates = torch.stack([sample_probs(probs, shots, generator) for _ in range(400)])
        assert (estimates.mean(0) - probs).abs().max() < 5 / math.sqrt(shots * 400)
        errors[shots] = (estimates - probs).square().mean().item()
    assert errors[10_000] < errors[100] / 50  # mean square error ∝ 1/shots


def test_sampled_circuit_module_redraws_every_call():
    torch.manual_seed(0)
    circuit = QuantumCircuit(5, 3, shots=200)
    first, second = circuit(), circuit()
    assert not torch.equal(first, second)
    for probs in (first, second):
        counts = probs.detach() * 200  # whole numbers, up to float32 rounding of counts / 200
        torch.testing.assert_close(counts, counts.round(), rtol=0, atol=1e-4)
    first.sum().backward()  # straight-through: Σp has zero gradient
    assert circuit.angles.grad.abs().max() < 1e-5


@pytest.mark.parametrize(
    ("probs", "shots", "error", "match"),
    [
        (torch.ones(4) / 4, 0, ValueError, "`shots` = 0"),
        (torch.ones(4) / 4, -5, ValueError, "`shots` = -5"),
        (torch.ones(4) / 4, 2.5, ValueError, "`shots` = 2.5"),
        (torch.ones(4) / 4, True, ValueError, "`shots` = True"),
        (torch.ones(3) / 3, 10, ValueError, r"`probs` must have shape \(2\*\*n_qubits,\)"),
        (torch.ones(2, 2) / 4, 10, ValueError, "`probs`"),
        ([0.5, 0.5], 10, TypeError, "`probs` must be a torch.Tensor"),
    ],
)
def test_bad_inputs_name_the_argument(probs, shots, error, match):
    with pytest.raises(error, match=match):
        sample_counts(probs, shots)
