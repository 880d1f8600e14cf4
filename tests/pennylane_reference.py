"""The QPA circuit written in PennyLane: the reference our simulator is tested and timed against."""

import pytest

qml = pytest.importorskip("pennylane", reason="the reference tests need pennylane (requirements-dev.txt)")


def pennylane_probs(n_qubits: int, entangler: str = "ladder", noise: float | None = None):
    """One QNode per circuit width: RY on every wire, then the CNOTs, per row of `angles`;
    with `noise`, on default.mixed with a depolarising channel on every wire after each block."""
    device = "default.qubit" if noise is None else "default.mixed"

    @qml.qnode(qml.device(device, wires=n_qubits), interface="torch", diff_method="backprop")
    def probs(angles):
        for row in angles:
            for wire in range(n_qubits):
                qml.RY(row[wire], wires=wire)
            for wire in range(n_qubits - 1):
                qml.CNOT(wires=[wire, wire + 1])
            if entangler == "ring" and n_qubits >= 2:
                qml.CNOT(wires=[n_qubits - 1, 0])
            for wire in range(n_qubits if noise is not None else 0):
                qml.DepolarizingChannel(noise, wires=wire)
        return qml.probs(wires=range(n_qubits))

    return probs
