"""QPA Studio's web app (gradio): builders in `app.tabs`, handlers in `app.handlers`, background
training in `app.jobs`, figures in `app.plots`. It calls the engine through `qpa`'s public names.
"""
