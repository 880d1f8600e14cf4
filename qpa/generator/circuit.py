"""The QPA circuit as a trainable module: exact, noisy (density matrix) or sampled (shots).

`make_circuit` builds the one a generator uses from a `QPAConfig`; the simulators it chooses
between live in `qpa.quantum`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from qpa.generator.mapping import postprocess
from qpa.quantum.kernels import check_count, check_entangler, one_thread
from qpa.quantum.noise import check_noisy_qubits, noisy_probs
from qpa.quantum.shots import sample_probs
from qpa.quantum.statevector import circuit_probs

if TYPE_CHECKING:
    from qpa.config import QPAConfig


class QuantumCircuit(nn.Module):
    """The QPA circuit as a module: trainable `angles` in, probabilities out.

    `noise` > 0 simulates depolarising noise after every block (`qpa.quantum.noise`, a density matrix);
    `shots` > 0 replaces the probabilities by a fresh estimate from that many measurements on
    every call, with a straight-through gradient (`qpa.quantum.shots`). Both 0: the exact statevector.

    >>> _ = torch.manual_seed(0)
    >>> circuit = QuantumCircuit(n_qubits=3, depth=2)
    >>> circuit
    QuantumCircuit(n_qubits=3, depth=2, entangler='ladder')
    >>> circuit().shape, round(circuit().sum().item(), 6)
    (torch.Size([8]), 1.0)
    >>> QuantumCircuit(n_qubits=3, depth=2, noise=0.01, shots=1000)
    QuantumCircuit(n_qubits=3, depth=2, entangler='ladder', noise=0.01, shots=1000)
    """

    def __init__(
        self,
        n_qubits: int,
        depth: int,
        entangler: str = "ladder",
        noise: float = 0.0,
        shots: int = 0,
    ):
        super().__init__()
        check_count("n_qubits", n_qubits)
        check_count("depth", depth)
        check_entangler(entangler)
        if noise:
            check_noisy_qubits(n_qubits, noise)
        if shots:
            check_count("shots", shots)
        self.n_qubits, self.depth, self.entangler = n_qubits, depth, entangler
        self.noise, self.shots = noise, shots
        self.angles = nn.Parameter(torch.empty(depth, n_qubits))  # (depth, N)
        nn.init.uniform_(self.angles, -math.pi, math.pi)

    def forward(self) -> torch.Tensor:
        if self.noise:
            probs = noisy_probs(self.angles, self.noise, self.entangler)  # (2**N,)
        else:
            probs = circuit_probs(self.angles, self.entangler)  # (2**N,)
        return sample_probs(probs, self.shots) if self.shots else probs

    def extra_repr(self) -> str:
        text = f"n_qubits={self.n_qubits}, depth={self.depth}, entangler={self.entangler!r}"
        if self.noise:
            text += f", noise={self.noise:g}"
        if self.shots:
            text += f", shots={self.shots}"
        return text


def make_circuit(n_qubits: int, config: QPAConfig) -> QuantumCircuit:
    """The circuit a QPA generator of `n_qubits` uses under `config` (depth, entangler, noise,
    shots); its one parameter is `angles`, whatever the options.

    >>> from qpa.config import QPAConfig
    >>> make_circuit(4, QPAConfig(depth=3, noise=0.02))
    QuantumCircuit(n_qubits=4, depth=3, entangler='ladder', noise=0.02)
    """
    return QuantumCircuit(
        n_qubits, config.depth, config.entangler, noise=config.noise, shots=config.shots
    )


def preview_probs(
    n_qubits: int, config: QPAConfig, seed: int = 0
) -> tuple[list[float], list[float], list[float] | None]:
    """What the mapping MLP reads at seeded random angles: the probabilities (noisy and/or
    sampled as `config` says), their post-processed x, and the exact probabilities when they
    differ (else None). The same seed gives the same angles and shots on every call.

    >>> from qpa.config import QPAConfig
    >>> probs, x, exact = preview_probs(3, QPAConfig(depth=2))
    >>> len(probs), round(sum(probs), 6), len(x), exact
    (8, 1.0, 8, None)
    """
    circuit = make_circuit(n_qubits, config)
    angles = torch.rand(config.depth, n_qubits, generator=torch.Generator().manual_seed(seed))
    angles = (angles * 2 - 1) * math.pi  # (L, N) uniform in [-π, π)
    with torch.no_grad(), one_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same shots on every call
        circuit.angles.copy_(angles)
        probs = circuit()  # (2^N,)
        exact = circuit_probs(angles, config.entangler) if config.noise or config.shots else None
        x = postprocess(probs, config.gamma, config.beta, config.alpha)  # (2^N,)
    return probs.tolist(), x.tolist(), None if exact is None else exact.tolist()
