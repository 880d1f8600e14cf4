"""QPA's weight generator: the circuit module, the mapping MLP, chunk and qubit maths."""
