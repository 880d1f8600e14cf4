"""QPA Studio in the browser: ``python app.py`` (binds 127.0.0.1; ``QPA_HOST`` or Spaces change it)."""

import sys

from app.settings import import_spaces_first, use_persistent_storage

import_spaces_first()  # on ZeroGPU, `spaces` wants to come before torch and gradio
use_persistent_storage()  # a Space's /data, before gradio reads HF_HOME

from app.ui import build_app, launch_kwargs  # noqa: E402

try:
    demo = build_app()  # reads the QPA_* settings
except ValueError as e:  # a bad setting: one line, no traceback
    sys.exit(f"error: {e}")

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
