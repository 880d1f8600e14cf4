"""``python -m qpa``: parser, flags, formatting and commands. Only this package prints."""
