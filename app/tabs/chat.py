"""Chat tab: talk to the base model or a run's adapter (streaming), or put base, QPA and LoRA
side by side on one prompt."""

from __future__ import annotations

from functools import partial

import gradio as gr

from app.handlers import chat as h
from app.state import Studio
from qpa import DEFAULT_MODEL, PRESETS, SHAPE_PRESETS, ChatConfig, field_help

GEN = field_help(ChatConfig)


def build(studio: Studio) -> gr.Button:
    """Lay out the Chat tab; returns a hidden button that refreshes the run pickers."""
    models = [m for m in PRESETS if m not in SHAPE_PRESETS]
    cap = studio.caps.max_new_tokens
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=280, elem_classes="qpa-controls"):
            gr.Markdown("### Model\nA run's adapter is merged into its base model for generation.")
            model = gr.Dropdown(
                models,
                value=DEFAULT_MODEL,
                label="Base model",
                allow_custom_value=True,
                info="The first reply loads it (smollm2: a few seconds, once).",
                elem_id="chat-model",
            )
            adapter = gr.Dropdown(
                h.adapter_choices(studio),
                value="",
                allow_custom_value=True,  # a run that finished after the page was built
                label="Adapter",
                info="A finished run; picking one switches to its base model.",
                elem_id="chat-adapter",
            )
            with gr.Accordion("Generation", open=True):
                max_new = gr.Slider(
                    1, cap, min(GEN["max_new_tokens"]["default"], cap), step=1,
                    label="Max new tokens", info=GEN["max_new_tokens"]["help"],
                )  # fmt: skip
                temperature = gr.Slider(
                    GEN["temperature"]["min"], GEN["temperature"]["max"],
                    GEN["temperature"]["default"], step=0.05, label="Temperature",
                    info=GEN["temperature"]["help"],
                )  # fmt: skip
                top_p = gr.Slider(
                    0.05, GEN["top_p"]["max"], GEN["top_p"]["default"], step=0.05,
                    label="Top-p", info=GEN["top_p"]["help"],
                )  # fmt: skip
            refresh = gr.Button("Refresh runs", size="sm", elem_id="chat-refresh")
        with gr.Column(scale=9):
            with gr.Tabs():
                with gr.Tab("Chat"):
                    bot = gr.Chatbot(
                        height=420,
                        show_label=False,
                        elem_id="chatbot",
                        placeholder="Say hello to the model.",
                    )
                    with gr.Row():
                        msg = gr.Textbox(
                            placeholder="Your message…",
                            show_label=False,
                            scale=8,
                            elem_id="chat-input",
                            submit_btn=False,
                        )
                        send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
                    gr.ClearButton([bot, msg], value="Clear", size="sm")
                with gr.Tab("Side by side"):
                    with gr.Row():
                        qpa_run = gr.Dropdown(
                            h.adapter_choices(studio, "qpa-lora"), value="", label="QPA run",
                            allow_custom_value=True,
                        )
                        lora_run = gr.Dropdown(
                            h.adapter_choices(studio, "lora"), value="", label="LoRA run",
                            allow_custom_value=True,
                        )
                    with gr.Row():
                        prompt = gr.Textbox(
                            placeholder="One prompt for all three…", show_label=False, scale=8
                        )
                        compare = gr.Button("Compare", variant="primary", scale=1)
                    with gr.Row(equal_height=True):
                        bots = [
                            gr.Chatbot(height=340, label=name, elem_classes="qpa-pane")
                            for name in ("Base", "QPA", "LoRA")
                        ]
    settings = [max_new, temperature, top_p]
    chat_in = [msg, bot, model, adapter, *settings]
    send.click(
        partial(h.on_send, studio), chat_in, [bot, msg], api_name="chat", concurrency_id="generate"
    )
    msg.submit(
        partial(h.on_send, studio),
        chat_in,
        [bot, msg],
        api_visibility="private",
        concurrency_id="generate",
    )
    compare.click(
        partial(h.on_compare, studio),
        [prompt, model, qpa_run, lora_run, *settings],
        bots,
        api_name="compare",
        concurrency_id="generate",
    )
    adapter.input(partial(h.on_pick_run, studio), adapter, model, api_visibility="private")
    refresh.click(
        partial(h.on_runs_changed, studio),
        None,
        [adapter, qpa_run, lora_run],
        api_visibility="private",
    )
    return refresh
