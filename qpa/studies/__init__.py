"""Studies built on training: variants and sweeps, results, paper reproduction, variance."""
