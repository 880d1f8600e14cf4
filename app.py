"""QPA Studio in the browser: ``python app.py`` (binds 127.0.0.1; ``QPA_HOST`` or Spaces change it)."""

from app.settings import use_persistent_storage

use_persistent_storage()  # a Space's /data, before gradio reads HF_HOME

from app.ui import build_app, launch_kwargs  # noqa: E402

demo = build_app()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
