"""Training: the backbone row cache, the session and the explicit loop."""
