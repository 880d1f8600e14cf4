"""The QPA circuit as a trainable module: exact, noisy (density matrix) or sampled (shots).

`make_circuit` builds the one a generator uses from a `QPAConfig`; the simulators it chooses
between live in `qpa.quantum`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from qpa.quantum.kernels import check_count, check_entangler
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
