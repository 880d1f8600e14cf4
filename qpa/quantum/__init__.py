"""The statevector simulator of QPA's circuit: block kernels, noise, shots (torch only)."""
