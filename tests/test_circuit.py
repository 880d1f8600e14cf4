"""qpa.quantum.statevector must equal PennyLane's default.qubit: probabilities and gradients, for every shape."""

import functools
import math

import pytest
import torch
from pennylane_reference import pennylane_probs

from qpa.generator.circuit import QuantumCircuit, make_circuit
from qpa.quantum import kernels
from qpa.quantum.kernels import ENTANGLERS
from qpa.quantum.statevector import circuit_probs, circuit_state

MAX_DEPTH = 16


@pytest.fixture(autouse=True, scope="module")
def one_intra_op_thread():
    """These tensors are tiny: on a busy machine, intra-op threads only add waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def probs_and_grad(probs_fn, angles: torch.Tensor, weights: torch.Tensor):
    """Probabilities and d(Σ weights·probs)/d(angles), both float64."""
    angles = angles.detach().clone().requires_grad_()
    probs = probs_fn(angles)
    (grad,) = torch.autograd.grad((weights * probs).sum(), angles)
    return probs.detach().double(), grad.double()


def assert_matches_pennylane(n_qubits, depths, entangler, dtype=torch.float64, atol=1e-6):
    generator = torch.Generator().manual_seed(n_qubits)
    reference = pennylane_probs(n_qubits, entangler)
    weights = torch.randn(2**n_qubits, generator=generator, dtype=torch.float64)
    for depth in depths:
        uniform = torch.rand(depth, n_qubits, generator=generator, dtype=torch.float64)
        angles = (2 * uniform - 1) * math.pi  # (L, N) in [-π, π)
        ours = probs_and_grad(lambda a: circuit_probs(a.to(dtype), entangler), angles, weights)
        theirs = probs_and_grad(reference, angles, weights)
        for name, mine, expected in zip(("probs", "grad"), ours, theirs, strict=True):
            error = (mine - expected).abs().max().item()
            assert error < atol, f"{name}: N={n_qubits} L={depth} {entangler}: error {error:.2e}"


@pytest.mark.parametrize("n_qubits", range(1, 13))
def test_ladder_matches_pennylane_for_every_depth(n_qubits):
    assert_matches_pennylane(n_qubits, range(1, MAX_DEPTH + 1), "ladder")


@pytest.mark.parametrize("n_qubits", [1, 2, 3, 4, 6, 7, 9, 11])
def test_ring_matches_pennylane(n_qubits):
    assert_matches_pennylane(n_qubits, [1, 2, 3, 8, MAX_DEPTH], "ring")


@pytest.mark.parametrize("n_qubits", [2, 5, 8, 12])
@pytest.mark.parametrize("entangler", ENTANGLERS)
def test_float32_stays_within_1e_5_of_pennylane_float64(n_qubits, entangler):
    assert_matches_pennylane(n_qubits, [1, 8], entangler, dtype=torch.float32, atol=1e-5)


@pytest.mark.parametrize(("fold", "group"), [(0, 1), (0, 2), (0, 3), (4, 4), (9, 5)])
def test_every_grouping_gives_the_same_circuit(monkeypatch, fold, group):
    """How the qubits are split into dense groups is an implementation detail."""
    angles = torch.rand(5, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weights = torch.randn(2**9, dtype=torch.float64)

    def run(entangler):
        return probs_and_grad(
            functools.partial(circuit_probs, entangler=entangler), angles, weights
        )

    expected = {entangler: run(entangler) for entangler in ENTANGLERS}
    monkeypatch.setattr(kernels, "_FOLD_QUBITS", fold)
    monkeypatch.setattr(kernels, "_GROUP_QUBITS", group)
    kernels.make_plan.cache_clear()
    try:
        for entangler, (probs, grad) in expected.items():
            got_probs, got_grad = run(entangler)
            torch.testing.assert_close(got_probs, probs, rtol=0, atol=1e-12)
            torch.testing.assert_close(got_grad, grad, rtol=0, atol=1e-12)
    finally:
        kernels.make_plan.cache_clear()


@pytest.mark.parametrize("n_qubits", [1, 3, 8])
@pytest.mark.parametrize("entangler", ENTANGLERS)
def test_state_backward_passes_gradcheck(n_qubits, entangler):
    angles = torch.rand(3, n_qubits, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a: circuit_state(a, entangler), (angles,), fast_mode=True
    )


@pytest.mark.parametrize("n_qubits", [1, 4, 7, 13])
@pytest.mark.parametrize("entangler", ENTANGLERS)
def test_probabilities_are_a_distribution(n_qubits, entangler):
    probs = circuit_probs(torch.rand(6, n_qubits) * 2 * math.pi, entangler)
    assert probs.shape == (2**n_qubits,) and probs.dtype == torch.float32
    assert (probs >= 0).all()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_state_squares_to_probs_and_keeps_dtype():
    angles = torch.rand(4, 8, dtype=torch.float64)
    state = circuit_state(angles)
    assert state.dtype == torch.float64
    torch.testing.assert_close(state**2, circuit_probs(angles))


def test_one_qubit_closed_form():
    theta = torch.tensor([[0.3], [1.1], [-0.5]], dtype=torch.float64)
    p0 = math.cos(theta[0, 0].item() / 2) ** 2
    assert circuit_probs(theta[:1])[0].item() == pytest.approx(p0, abs=1e-12)
    total = theta.sum().item()  # R_Y rotations on one qubit add up
    expected = [math.cos(total / 2) ** 2, math.sin(total / 2) ** 2]
    assert circuit_probs(theta).tolist() == pytest.approx(expected, abs=1e-12)


def test_two_qubit_closed_form_ladder_and_ring():
    a, b = 0.7, -1.9
    c0, s0, c1, s1 = math.cos(a / 2), math.sin(a / 2), math.cos(b / 2), math.sin(b / 2)
    angles = torch.tensor([[a, b]], dtype=torch.float64)
    ladder = [c0 * c1, c0 * s1, s0 * s1, s0 * c1]  # CNOT 0→1 swaps |10⟩ and |11⟩
    ring = [c0 * c1, s0 * c1, s0 * s1, c0 * s1]  # then CNOT 1→0 swaps |01⟩ and |11⟩
    assert circuit_state(angles, "ladder").tolist() == pytest.approx(ladder, abs=1e-12)
    assert circuit_state(angles, "ring").tolist() == pytest.approx(ring, abs=1e-12)


def test_zero_angles_leave_all_zeros_state():
    expected = torch.zeros(2**5)
    expected[0] = 1
    for entangler in ENTANGLERS:
        assert torch.equal(circuit_probs(torch.zeros(3, 5), entangler), expected)


@pytest.mark.parametrize(("n_qubits", "depth"), [(1, 1), (4, 8), (7, 3)])
def test_quantum_circuit_module(n_qubits, depth):
    module = QuantumCircuit(n_qubits, depth, entangler="ring")
    assert (module.n_qubits, module.depth, module.entangler) == (n_qubits, depth, "ring")
    assert sum(p.numel() for p in module.parameters()) == n_qubits * depth
    assert module.angles.shape == (depth, n_qubits)
    assert (module.angles >= -math.pi).all() and (module.angles < math.pi).all()
    probs = module()
    torch.testing.assert_close(probs, circuit_probs(module.angles.detach(), "ring"))
    probs[0].backward()
    assert module.angles.grad is not None and module.angles.grad.shape == (depth, n_qubits)


@pytest.mark.parametrize(
    ("angles", "entangler", "error", "match"),
    [
        (torch.zeros(4), "ladder", ValueError, "`angles`"),
        (torch.zeros(2, 3, 4), "ladder", ValueError, "`angles`"),
        (torch.zeros(0, 3), "ladder", ValueError, "`angles`"),
        (torch.zeros(2, 3, dtype=torch.int64), "ladder", ValueError, "`angles`"),
        ([[0.0, 1.0]], "ladder", TypeError, "`angles`"),
        (torch.zeros(2, 3), "star", ValueError, "`entangler` = 'star' is not one of ladder, ring"),
    ],
)
def test_bad_function_inputs_name_the_argument(angles, entangler, error, match):
    with pytest.raises(error, match=match):
        circuit_probs(angles, entangler)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_qubits": 0, "depth": 2}, "`n_qubits` = 0"),
        ({"n_qubits": 3, "depth": 0}, "`depth` = 0"),
        ({"n_qubits": 2.5, "depth": 2}, "`n_qubits` = 2.5"),
        ({"n_qubits": 3, "depth": 2, "entangler": "all"}, "`entangler` = 'all'"),
    ],
)
def test_bad_module_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantumCircuit(**kwargs)


@pytest.mark.parametrize(
    ("noise", "shots", "repr_tail"),
    [(0.0, 0, "entangler='ring')"), (0.0, 64, "shots=64)"), (0.02, 0, "noise=0.02)")],
)
def test_make_circuit_follows_the_config_and_keeps_one_angles_parameter(noise, shots, repr_tail):
    from qpa.config import QPAConfig

    config = QPAConfig(depth=3, entangler="ring", noise=noise, shots=shots)
    module = make_circuit(4, config)
    assert repr(module).endswith(repr_tail)
    assert list(module.state_dict()) == ["angles"] and module.angles.shape == (3, 4)
    probs = module()
    if noise == 0 and shots == 0:  # the exact path is the statevector itself
        assert torch.equal(probs, circuit_probs(module.angles, "ring"))
    assert probs.shape == (16,) and probs.sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shots": -1}, "`shots` = -1"),
        ({"shots": 1.5}, "`shots` = 1.5"),
        ({"noise": 2.0}, "`noise`"),
    ],
)
def test_bad_noise_and_shots_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantumCircuit(3, 2, **kwargs)
