"""Runs tab, Hub section: the "runs are temporary" notice, and pushing the open run to the Hub
(with a Hugging Face login button on a Space, so visitors push with their own account)."""

from __future__ import annotations

import gradio as gr

from app.handlers import hub as h
from app.state import Studio


def build(studio: Studio, run: gr.Dropdown) -> None:
    """Lay out the push controls for the run chosen in `run`."""
    with gr.Accordion("Push to the Hugging Face Hub", open=not studio.settings.persistent):
        if studio.settings.login:
            gr.LoginButton(size="sm")
        repo = gr.Textbox(label="Repo", placeholder="USER/NAME", elem_id="push-repo",
                          info="A model repo; created when missing.")  # fmt: skip
        with gr.Row():
            private = gr.Checkbox(label="Private")
            merged = gr.Checkbox(label="Merged model", info="The base model with the adapter in.")
        button = gr.Button("Push to the Hub", size="sm", elem_id="push-run")
        result = gr.Markdown(elem_id="push-result")
    inputs = [run, repo, private, merged]
    if studio.settings.login:

        def push(run_id, repo, private, merged, token: gr.OAuthToken | None):  # the visitor's
            return h.on_push(studio, run_id, repo, private, merged, token and token.token)

    else:

        def push(run_id, repo, private, merged):  # $HF_TOKEN, as in the CLI
            return h.on_push(studio, run_id, repo, private, merged)

    button.click(push, inputs, result, api_visibility="private")


def temporary_notice(studio: Studio) -> None:
    """The notice, where runs are lost at a restart."""
    if text := h.notice(studio):
        gr.Markdown(text, elem_id="runs-temporary", elem_classes="qpa-notice")
