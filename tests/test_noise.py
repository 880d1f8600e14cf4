"""qpa.quantum.noise must equal PennyLane's default.mixed with a DepolarizingChannel on every wire after
every block: probabilities and gradients w.r.t. the angles, ladder and ring."""

import functools
import math

import pytest
import torch
from pennylane_reference import pennylane_probs

from qpa.config import QPAConfig
from qpa.generator.circuit import QuantumCircuit, make_circuit
from qpa.quantum import kernels
from qpa.quantum.noise import density_matrix, depolarize, noisy_probs
from qpa.quantum.statevector import circuit_probs, circuit_state


def probs_and_grad(probs_fn, angles: torch.Tensor, weights: torch.Tensor):
    """Probabilities and d(Σ weights·probs)/d(angles), float64."""
    angles = angles.detach().clone().requires_grad_()
    probs = probs_fn(angles)
    (grad,) = torch.autograd.grad((weights * probs).sum(), angles)
    return probs.detach().double(), grad.double()


def random_angles(depth: int, n_qubits: int, seed: int) -> torch.Tensor:
    uniform = torch.rand(depth, n_qubits, generator=torch.Generator().manual_seed(seed))
    return (2 * uniform.double() - 1) * math.pi  # (L, N)


@pytest.mark.parametrize(
    ("n_qubits", "depth", "noise", "entangler"),
    [
        (1, 3, 0.1, "ladder"),
        (2, 2, 0.05, "ring"),
        (3, 4, 0.01, "ladder"),
        (4, 2, 0.3, "ring"),
        (5, 3, 0.02, "ladder"),
        (7, 2, 0.05, "ring"),  # beyond _FOLD_QUBITS: group matrices and a CNOT permutation
        (7, 1, 1.0, "ladder"),
    ],
)
def test_matches_pennylane_default_mixed(n_qubits, depth, noise, entangler):
    angles = random_angles(depth, n_qubits, seed=n_qubits + depth)
    weights = torch.randn(2**n_qubits, dtype=torch.float64)
    ours = probs_and_grad(lambda a: noisy_probs(a, noise, entangler), angles, weights)
    theirs = probs_and_grad(pennylane_probs(n_qubits, entangler, noise), angles, weights)
    for name, mine, expected in zip(("probs", "grad"), ours, theirs, strict=True):
        error = (mine - expected).abs().max().item()
        assert error < 1e-6, f"{name}: N={n_qubits} L={depth} p={noise} {entangler}: {error:.1e}"


@pytest.mark.parametrize("n_qubits", [1, 3, 6, 8])
@pytest.mark.parametrize("entangler", ["ladder", "ring"])
def test_zero_noise_equals_the_statevector(n_qubits, entangler):
    angles = random_angles(5, n_qubits, seed=n_qubits)
    weights = torch.randn(2**n_qubits, dtype=torch.float64)
    mixed = probs_and_grad(lambda a: noisy_probs(a, 0.0, entangler), angles, weights)
    pure = probs_and_grad(lambda a: circuit_probs(a, entangler), angles, weights)
    for mine, expected in zip(mixed, pure, strict=True):
        torch.testing.assert_close(mine, expected, rtol=0, atol=1e-12)
    state = circuit_state(angles, entangler)
    torch.testing.assert_close(density_matrix(angles, 0.0, entangler), torch.outer(state, state))


@pytest.mark.parametrize(("fold", "group"), [(0, 1), (0, 2), (3, 3), (9, 5)])
def test_every_grouping_gives_the_same_noisy_circuit(monkeypatch, fold, group):
    angles = random_angles(3, 6, seed=0)
    weights = torch.randn(64, dtype=torch.float64)
    run = functools.partial(probs_and_grad, weights=weights, angles=angles)
    expected = run(lambda a: noisy_probs(a, 0.07, "ring"))
    monkeypatch.setattr(kernels, "_FOLD_QUBITS", fold)
    monkeypatch.setattr(kernels, "_GROUP_QUBITS", group)
    kernels.make_plan.cache_clear()
    try:
        got = run(lambda a: noisy_probs(a, 0.07, "ring"))
        for mine, reference in zip(got, expected, strict=True):
            torch.testing.assert_close(mine, reference, rtol=0, atol=1e-12)
    finally:
        kernels.make_plan.cache_clear()


def test_density_matrix_is_a_state_and_noise_mixes_it():
    angles = random_angles(4, 4, seed=3)
    purities = []
    for noise in (0.0, 0.02, 0.2, 0.75):
        rho = density_matrix(angles, noise)
        torch.testing.assert_close(rho, rho.T, rtol=0, atol=1e-14)
        assert rho.trace().item() == pytest.approx(1.0, abs=1e-12)
        assert torch.linalg.eigvalsh(rho).min().item() > -1e-12
        purities.append((rho @ rho).trace().item())
    assert purities[0] == pytest.approx(1.0) and purities == sorted(purities, reverse=True)
    assert purities[-1] == pytest.approx(1 / 16)  # p = 3/4: the maximally mixed state


def test_depolarising_is_self_adjoint_so_its_gradient_is_itself():
    rho = torch.randn(16, 16, dtype=torch.float64)
    rho = (rho + rho.T).requires_grad_()
    assert torch.autograd.gradcheck(lambda r: depolarize(r, 0.3), (rho,), fast_mode=True)


def test_one_qubit_closed_form():
    """R_Y(θ) then depolarising: ⟨Z⟩ = (1 − 4p/3)·cos θ."""
    theta, noise = 0.9, 0.12
    probs = noisy_probs(torch.tensor([[theta]], dtype=torch.float64), noise)
    z = (1 - 4 * noise / 3) * math.cos(theta)
    assert probs.tolist() == pytest.approx([(1 + z) / 2, (1 - z) / 2], abs=1e-14)


def test_noisy_module_keeps_angles_and_float32():
    torch.manual_seed(0)
    module = make_circuit(5, QPAConfig(depth=3, noise=0.05, entangler="ring"))
    assert isinstance(module, QuantumCircuit)
    assert [name for name, _ in module.named_parameters()] == ["angles"]  # saved states load
    probs = module()
    assert probs.shape == (32,) and probs.dtype == torch.float32
    expected = noisy_probs(module.angles.detach().double(), 0.05, "ring")
    torch.testing.assert_close(probs.double(), expected, rtol=0, atol=1e-6)
    probs[0].backward()
    assert module.angles.grad.shape == (3, 5) and module.angles.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: noisy_probs(torch.zeros(2, 11), 0.01), r"`noise` = 0.01 .* `n_qubits` = 11"),
        (lambda: noisy_probs(torch.zeros(2, 3), 1.5), r"`noise` = 1.5 must be a probability"),
        (lambda: noisy_probs(torch.zeros(2, 3), -0.1), r"`noise` = -0.1"),
        (lambda: noisy_probs(torch.zeros(3), 0.1), "`angles`"),
        (lambda: noisy_probs(torch.zeros(2, 3), 0.1, "star"), "`entangler` = 'star'"),
        (lambda: QuantumCircuit(12, 2, noise=0.1), r"`noise` = 0.1 .* `n_qubits` = 12"),
        (lambda: QPAConfig(n_qubits=11, noise=0.1), r"`noise` = 0.1 .* `n_qubits` = 11"),
    ],
)
def test_bad_inputs_name_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()
