"""The run-folder contract shared by engine, CLI, app and tests (no torch at import)."""
