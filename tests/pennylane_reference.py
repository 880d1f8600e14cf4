"""The QPA circuit written in PennyLane: the reference our simulator is tested and timed against."""

import pennylane as qml


def pennylane_probs(n_qubits: int, entangler: str = "ladder"):
    """One QNode per circuit width: RY on every wire, then the CNOTs, per row of `angles`."""

    @qml.qnode(
        qml.device("default.qubit", wires=n_qubits), interface="torch", diff_method="backprop"
    )
    def probs(angles):
        for row in angles:
            for wire in range(n_qubits):
                qml.RY(row[wire], wires=wire)
            for wire in range(n_qubits - 1):
                qml.CNOT(wires=[wire, wire + 1])
            if entangler == "ring" and n_qubits >= 2:
                qml.CNOT(wires=[n_qubits - 1, 0])
        return qml.probs(wires=range(n_qubits))

    return probs
