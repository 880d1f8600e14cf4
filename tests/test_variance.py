"""qpa.studies.variance: gradients equal PennyLane's, variances follow known laws, inputs are checked."""

import json
import math

import pytest
import torch
from pennylane_reference import pennylane_probs

from qpa.cli.main import main
from qpa.config import QPAConfig
from qpa.quantum.statevector import circuit_probs
from qpa.studies.variance import (
    batched_probs,
    cost_gradients,
    fit_decay,
    gradient_variance,
    random_angles,
)


def pennylane_gradients(angles: torch.Tensor, cost: str, entangler: str) -> torch.Tensor:
    """∂C/∂θ per angle set with default.qubit (backprop): C = ⟨Z₀⟩ or P(|0…0⟩)."""
    n_qubits = angles.shape[-1]
    circuit = pennylane_probs(n_qubits, entangler)
    grads = []
    for theta in angles:
        theta = theta.clone().requires_grad_()
        probs = circuit(theta)  # (2^N,)
        half = 2 ** (n_qubits - 1)
        value = probs[:half].sum() - probs[half:].sum() if cost == "local" else probs[0]
        grads.append(torch.autograd.grad(value, theta)[0])
    return torch.stack(grads)  # (S, L, N)


@pytest.mark.parametrize(
    ("cost", "n_qubits", "depth", "entangler"),
    [("local", 3, 4, "ladder"), ("global", 4, 3, "ring"), ("local", 8, 2, "ring")],
)
def test_gradients_and_variance_match_pennylane(cost, n_qubits, depth, entangler):
    config = QPAConfig(entangler=entangler)
    (row,) = gradient_variance([n_qubits], [depth], samples=12, cost=cost, seed=5, config=config)
    angles = random_angles(12, depth, n_qubits, seed=5)  # the same draw as the row's
    ours = cost_gradients(angles, cost, config)
    theirs = pennylane_gradients(angles, cost, entangler)
    assert (ours - theirs).abs().max().item() < 1e-10
    assert row["variance"] == pytest.approx(theirs.var(dim=0).mean().item(), rel=1e-9)
    assert row["variance_first"] == pytest.approx(theirs[:, 0, 0].var().item(), rel=1e-9)


@pytest.mark.parametrize("n_qubits", [1, 3, 7, 10])
@pytest.mark.parametrize("entangler", ["ladder", "ring"])
def test_batched_probs_equal_the_circuit(n_qubits, entangler):
    angles = random_angles(3, 4, n_qubits, seed=n_qubits)
    expected = torch.stack([circuit_probs(theta, entangler) for theta in angles])
    torch.testing.assert_close(batched_probs(angles, entangler), expected, rtol=0, atol=1e-14)


def test_global_cost_variance_decays_exponentially_at_depth_at_least_n():
    rows = gradient_variance([2, 4, 6, 8], [8], samples=200, cost="global")
    variances = [row["variance"] for row in rows]
    assert all(
        later < earlier / 3 for earlier, later in zip(variances, variances[1:], strict=False)
    )
    (fit,) = fit_decay(rows)
    assert fit["qubits"] == [2, 4, 6, 8] and 0.15 < fit["factor_per_qubit"] < 0.45


def test_local_cost_at_depth_one_has_its_closed_form():
    """Depth 1, ladder: ⟨Z₀⟩ = cos θ[0, 0], so ∂C/∂θ[0, 0] = −sin θ[0, 0] and no other angle
    matters; with depolarising noise p the slope shrinks by 1 − 4p/3."""
    angles = random_angles(50, 1, 5, seed=1)
    for noise in (0.0, 0.1):
        grads = cost_gradients(angles, "local", QPAConfig(noise=noise))
        expected = -(1 - 4 * noise / 3) * torch.sin(angles[:, 0, 0])
        torch.testing.assert_close(grads[:, 0, 0], expected, rtol=0, atol=1e-12)
        assert grads[:, 0, 1:].abs().max().item() < 1e-12
    (row,) = gradient_variance([5], [1], samples=4000, cost="local")
    assert row["variance"] == pytest.approx(row["variance_first"] / 5, rel=1e-9)
    assert row["variance_first"] == pytest.approx(0.5, abs=0.04)  # Var sin θ, θ ~ U(−π, π)


def test_generator_cost_is_seeded_and_leaves_the_global_stream_alone():
    angles = random_angles(3, 2, 3, seed=0)
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    first = cost_gradients(angles, "generator", seed=0)
    assert torch.equal(torch.rand(1), before)
    assert torch.equal(cost_gradients(angles, "generator", seed=0), first)
    assert not torch.equal(cost_gradients(angles, "generator", seed=1), first)
    assert first.shape == (3, 2, 3) and first.abs().min().item() > 0


def test_fit_decay_recovers_an_exact_exponential():
    rows = [
        {"cost": "global", "n_qubits": n, "depth": depth, "variance": 3.0 * factor**n}
        for depth, factor in ((4, 0.25), (9, 0.7))
        for n in (2, 3, 5)
    ]
    rows.append({"cost": "global", "n_qubits": 4, "depth": 1, "variance": 0.1})  # one N: no fit
    fits = {fit["depth"]: fit for fit in fit_decay(rows)}
    assert sorted(fits) == [4, 9]
    assert fits[4]["factor_per_qubit"] == pytest.approx(0.25)
    assert fits[9]["log2_slope"] == pytest.approx(math.log2(0.7))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"qubits": "2,x"}, r"`qubits` = '2,x' must be whole numbers in 1…16"),
        ({"qubits": [0, 2]}, r"`qubits` = \[0, 2\] must be whole numbers in 1…16"),
        ({"qubits": ""}, "`qubits` = '' is empty"),
        ({"qubits": "13", "cost": "generator"}, r"`qubits` = '13' must be whole numbers in 1…12"),
        ({"depths": "8,600"}, r"`depths` = '8,600' must be whole numbers in 1…512"),
        ({"samples": 1}, r"`samples` = 1 must be a whole number in 2…"),
        ({"cost": "energy"}, "`cost` = 'energy' is not one of: local, global, generator"),
        ({"qubits": "4,11", "config": QPAConfig(noise=0.1)}, r"`qubits` up to 11 with `noise`"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, match):
    arguments = {"qubits": "2,4", "depths": "1", "samples": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        gradient_variance(**arguments)


@pytest.mark.parametrize("angles", [torch.zeros(3, 4), torch.zeros(0, 2, 3), [[[0.0]]]])
def test_cost_gradients_checks_the_angles_shape(angles):
    with pytest.raises(ValueError, match=r"`angles` must have shape \(samples, depth, n_qubits\)"):
        cost_gradients(angles)


def test_cli_prints_a_table_and_json(capsys):
    argv = ["variance", "--qubits", "2,3", "--depths", "1,3", "--samples", "20", "--cost"]
    assert main([*argv, "global"]) == 0
    text = capsys.readouterr().out
    assert "cost global" in text and "per added qubit" in text
    assert main([*argv, "local", "--json", "--entangler", "ring"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(r["n_qubits"], r["depth"]) for r in result["rows"]] == [(2, 1), (2, 3), (3, 1), (3, 3)]
    assert {fit["depth"] for fit in result["fits"]} == {1, 3}
    with pytest.raises(SystemExit) as exit_:  # argparse knows the choices (from VarianceConfig)
        main(["variance", "--qubits", "2", "--cost", "energy"])
    assert exit_.value.code == 2 and "--cost: invalid choice: 'energy'" in capsys.readouterr().err
