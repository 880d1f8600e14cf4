"""Chat tab: stream replies from the base model or a run's exported adapter, one at a time or
side by side (base vs QPA vs LoRA on the same prompt, same seed).

Models come from `qpa.inference.chat.get_chat_model`, which keeps the last few loaded and merges an adapter
into the base weights, so a reply costs what the base model costs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app.handlers.common import as_float, as_int, check_model, guarded
from app.state import Studio
from qpa import SHAPE_PRESETS, get_chat_model, list_runs, open_run

COMPARE_SEED = 0  # the three columns sample with the same seed


def adapter_choices(studio: Studio, method: str | None = None) -> list[tuple[str, str]]:
    """(label, run id) of every run with an exported adapter (of `method`); no adapter first."""
    out = [("none: the base model", "")]
    for run in list_runs(studio.root):
        c = run.config
        if run.has_adapter() and method in (None, c.adapter.method):
            out.append((f"{run.id} · {c.adapter.method} · {c.model.model}", run.id))
    return out


def resolve(studio: Studio, model: str, run_id: str | None) -> tuple[str, Path | None]:
    """(base model, adapter folder or None) to chat with; a run brings its own base model."""
    if run_id:
        run = open_run(run_id, studio.root)
        if not run.has_adapter():
            raise ValueError(
                f"`run` {run_id!r} has no exported adapter yet; wait until it finishes."
            )
        return run.config.model.model, run.adapter_dir
    model = check_model(studio.caps.any_model, model)
    if model in SHAPE_PRESETS:
        raise ValueError(
            f"`model` = {model!r} is a shape-only preset (no weights); chat with smollm2, "
            "a tiny-* preset or a Hub id."
        )
    return model, None


def check_prompt(studio: Studio, text: str, history: list[dict] | None = None) -> str:
    """`text` stripped, if it and the conversation before it fit this studio's caps."""
    text = (text or "").strip()
    if not text:
        raise ValueError("Type a message first.")
    cap = studio.caps.max_prompt_chars
    if len(text) > cap:
        raise ValueError(f"The message has {len(text):,} characters; the cap here is {cap:,}.")
    earlier = sum(len(m["content"]) for m in to_messages(history))
    if earlier + len(text) > 4 * cap:
        raise ValueError(
            f"The conversation has {earlier + len(text):,} characters, above the cap of "
            f"{4 * cap:,}; press Clear to start a new one."
        )
    return text


def generation(studio: Studio, max_new_tokens, temperature, top_p) -> dict[str, Any]:
    """Generation settings, with this studio's cap on reply length."""
    n = as_int("max_new_tokens", max_new_tokens)
    cap = studio.caps.max_new_tokens
    if n > cap:
        raise ValueError(f"`max_new_tokens` = {n} is above the cap of {cap} here.")
    return {
        "max_new_tokens": n,
        "temperature": as_float("temperature", temperature),
        "top_p": as_float("top_p", top_p),
    }


def text_of(content: Any) -> str:
    """Message content as text: gradio 6 hands content as a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text") or ""
    if isinstance(content, (list, tuple)):
        return "".join(text_of(part) for part in content)
    return ""


def to_messages(history: list[dict] | None) -> list[dict[str, str]]:
    """The chat's history as plain messages; ValueError for anything else an API caller sent."""
    if history is None:
        return []
    shape = "a list of {role, content} messages"
    if not isinstance(history, list):
        raise ValueError(f"`history` must be {shape}, got {type(history).__name__}.")
    for m in history:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"`history` must be {shape}; got {str(m)[:80]!r}.")
    return [{"role": m["role"], "content": text_of(m.get("content"))} for m in history]


def stream_reply(studio: Studio, messages, model, run_id, settings: dict, seed=None):
    """Yield the growing reply text for `messages` from the chosen model."""
    name, adapter = resolve(studio, model, run_id)
    chat = get_chat_model(name, adapter)
    reply = ""
    for piece in chat.stream(messages, seed=seed, **settings):
        reply += piece
        yield reply


# -- event handlers -------------------------------------------------------------------------------


@guarded
def on_send(studio: Studio, message, history, model, run_id, max_new_tokens, temperature, top_p):
    """Send: append the user's message and stream the reply into the chat."""
    message = check_prompt(studio, message, history)
    settings = generation(studio, max_new_tokens, temperature, top_p)
    resolve(studio, model, run_id)
    messages = [*to_messages(history), {"role": "user", "content": message}]
    shown = [*messages, {"role": "assistant", "content": "…"}]
    yield shown, ""
    yield from _stream_into(
        shown, studio, messages, model, run_id, settings, None, lambda h: (h, "")
    )


def _stream_into(shown, studio, messages, model, run_id, settings, seed, pack):
    """Stream a reply into the last message of `shown`; an error becomes that message."""
    try:
        for reply in stream_reply(studio, messages, model, run_id, settings, seed):
            shown[-1] = {"role": "assistant", "content": reply}
            yield pack(list(shown))
    except (ValueError, OSError) as e:
        gr.Warning(str(e))
        shown[-1] = {"role": "assistant", "content": f"⚠️ {e}"}
    text = shown[-1]["content"]
    if text in ("…", "(waiting)") or not text.strip():
        note = "no tokens" if text in ("…", "(waiting)") else f"{len(text)} whitespace characters"
        shown[-1] = {"role": "assistant", "content": f"*(empty reply: {note})*"}
    yield pack(list(shown))


@guarded
def on_compare(
    studio: Studio, prompt, model, qpa_run, lora_run, max_new_tokens, temperature, top_p
):
    """Compare: the same prompt to the base model, a QPA run and a LoRA run, one after another."""
    prompt = check_prompt(studio, prompt)
    settings = generation(studio, max_new_tokens, temperature, top_p)
    base = next((resolve(studio, "", r)[0] for r in (qpa_run, lora_run) if r), model)
    resolve(studio, base, None)
    messages = [{"role": "user", "content": prompt}]
    columns = [("base", ""), ("QPA", qpa_run), ("LoRA", lora_run)]
    shown = [[*messages, {"role": "assistant", "content": "(waiting)"}] for _ in columns]
    label = gr.update(label=f"Base: {base}")  # the runs' own base model, when runs are picked

    def pack(history, i):
        out = [history if j == i else shown[j] for j in range(3)]
        return gr.update(value=out[0], label=label["label"]), out[1], out[2]

    yield pack(shown[0], 0)
    for i, (name, run_id) in enumerate(columns):
        if i and not run_id:
            shown[i][-1] = {"role": "assistant", "content": f"(pick a {name} run above)"}
            yield pack(shown[i], i)
            continue
        yield from _stream_into(
            shown[i],
            studio,
            messages,
            base,
            run_id,
            settings,
            COMPARE_SEED,
            lambda h, i=i: pack(h, i),
        )


def on_runs_changed(studio: Studio):
    """Refresh the adapter pickers (new runs may have finished)."""
    return (
        gr.update(choices=adapter_choices(studio)),
        gr.update(choices=adapter_choices(studio, "qpa-lora")),
        gr.update(choices=adapter_choices(studio, "lora")),
    )


@guarded
def on_pick_run(studio: Studio, run_id: str | None):
    """An adapter picked: its base model becomes the model (an adapter fits only its own)."""
    if not run_id:
        return gr.skip()
    return gr.update(value=open_run(run_id, studio.root).config.model.model)
