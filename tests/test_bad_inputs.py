"""The bad-input matrix: every bad input to the CLI, the library or a UI handler gives a clear
message naming what is wrong, never a traceback, and leaves the runs folder byte-identical.
Cases marked with a probe id (H1, U3, ...) are the failures of the reliability probe of issue
#17, each of which failed before its fix."""

import pytest

pytest.importorskip("gradio", reason="the app tests need gradio (requirements.txt)")

import hashlib
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from tiny_run import tiny_form

from app.handlers import chat, data, design, results, runs, train
from app.state import Studio
from qpa import AdapterConfig, QPAConfig, RunConfig, count_params, create_run, open_run
from qpa.cli.main import main
from qpa.data.splits import check_upload
from qpa.inference.chat import check_messages, get_chat_model
from qpa.models.loading import load_model

HIDDEN = "32,64,128,128,64,32,32"
GPT2 = {"model": "gpt2-config", "target_modules": ["lm_head"], "rank": 4, "chunk_size": 2048,
        "n_qubits": 7, "depth": 8, "hidden_sizes": HIDDEN, "entangler": "ladder"}  # fmt: skip
UPLOADS = {
    "empty.txt": b"",
    "blank.txt": b"  \n\n\t\n",
    "binary.txt": b"\x00\x01\x02\x03 not text",
    "latin1.txt": b"caf\xe9 au lait, cr\xe8me br\xfbl\xe9e\n",
    "tags.yml": b"conversations:\n- !!python/object/apply:os.system ['echo pwned']\n",
    "custom.yml": b"conversations: !include /etc/passwd\n",
    "broken.yml": b"conversations: [unclosed\n",
    "bad.jsonl": b'{"text": "ok"}\n{not json\n',
    "wrong.jsonl": b'{"messages": [{"role": "wizard", "content": "hi"}]}\n',
    "program.exe": b"MZ\x90\x00",
    "notes.txt": b"A paragraph about qubits.\n\nAnother about LoRA.\n",
    "deep.json": b"[" * 100_000 + b"]" * 100_000,
    "deep.jsonl": b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    "deep.yml": b"conversations: " + b"[" * 5_000 + b"]" * 5_000 + b"\n",
    "seed.json": b'{"train": {"seed": 1180591620717411303424}}',  # 2**70
}
LAUGHS = "\n".join(  # a "billion laughs": 9 levels of 9 aliases, 10**9 strings from 0.6 KB
    ["conversations:", "- &a0 [lol, lol]"]
    + [f"- &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """A runs root holding one finished run, the bad uploads, and studios on that root."""
    root = tmp_path_factory.mktemp("runs")
    folder = tmp_path_factory.mktemp("uploads")
    for name, content in UPLOADS.items():
        (folder / name).write_bytes(content)
    with open(folder / "huge.txt", "wb") as f:
        f.truncate(21 * 2**20)  # sparse: refused by size before any read
    (folder / "dir.txt").mkdir()
    (folder / "bad.json").write_text("{not json")
    (folder / "unknown-key.json").write_text('{"nope": 1}')
    (folder / "laughs.yml").write_text(LAUGHS)
    os.mkfifo(folder / "fifo.json")  # no writer: reading it would block forever
    run = create_run(RunConfig.from_dict({"model": {"model": "tiny-llama"}}), root, name="done")
    run.append_metrics({"step": 1, "split": "val", "loss": 1.0, "perplexity": 2.7})
    run.save_state({"w": torch.ones(2)}, {"step": 1})
    run.adapter_dir.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (run.adapter_dir / name).write_text("{}")
    run.set_status("done", step=1)
    return SimpleNamespace(
        root=root, up=folder, full=Studio.create(runs_root=root, demo=False),
        demo=Studio.create(runs_root=root, demo=True), local=str(tmp_path_factory.mktemp("model")),
    )  # fmt: skip


def tree_hash(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (hidden ones too), and every folder's name."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def form(**overrides) -> dict:
    return tiny_form(**{"n_qubits": 3, "max_length": 48, "loss_on": "all", **overrides})


def preview(model: str, source: str, topics: list, upload, max_length: int, max_examples: int):
    """The Preview button's form."""
    return {"model": model, "source": source, "topics": topics, "upload": upload,
            "max_length": max_length, "max_examples": max_examples}  # fmt: skip


def cli(*argv):
    return ("cli", list(argv))


def lib(fn):
    return ("lib", fn)


def ui(fn):
    return ("ui", fn)


TINY = ("--model", "tiny-llama")
LONG = "word " * 9_000  # 45,000 characters
BIG = "99999999999999999999999"
SEED_CAP = "must be ≤ 4,294,967,295"
DEMO_CAP = "this demo loads only"
PROBE_CASES = {  # the probe's failures (issue #17), by id
    # H1: a YAML alias bomb is refused before anything expands it
    "H1-cli-yaml-bomb": (*cli("train", *TINY, "--corpus", "{up}/laughs.yml"), "aliases"),
    "H1-lib-yaml-bomb": (*lib(lambda c: check_upload(c.up / "laughs.yml")), "aliases"),
    "H1-ui-upload-bomb": (*ui(lambda c: data.on_upload(str(c.up / "laughs.yml"))), "aliases"),
    "H1-ui-preview-bomb": (
        *ui(lambda c: data.on_preview(c.demo, preview("tiny-llama", data.SOURCES[1], [],
                                                      str(c.up / "laughs.yml"), 48, 40))),
        "aliases",
    ),  # fmt: skip
    # H4: --config reads regular files only
    "H4-cli-config-fifo": (*cli("count", "--config", "{up}/fifo.json"), "not a regular file"),
    "H4-cli-config-dev-zero": (*cli("count", "--config", "/dev/zero"), "not a regular file"),
    # L1, L2: a demo reads no model but its presets, on every endpoint
    "L1-ui-preview-local-model": (
        *ui(lambda c: data.on_preview(c.demo, preview(c.local, data.SOURCES[0], ["ai"], None, 48,
                                                      40))),
        DEMO_CAP,
    ),  # fmt: skip
    "L2-ui-count-local-path": (*ui(lambda c: design.count_api(c.demo)("/root")), DEMO_CAP),
    "L2-ui-design-local-path": (*ui(lambda c: design.on_change(c.demo, {"model": c.local})), DEMO_CAP),
    "L2-ui-targets-local-path": (
        *ui(lambda c: design.on_model(c.demo, "/root", [], "smollm2")), DEMO_CAP
    ),  # the box goes back to the counted model, saying why
    # U3: seeds beyond what torch takes are refused before a run folder exists
    "U3-cli-seed": (*cli("train", *TINY, "--seed", BIG), f"`seed` = {BIG} {SEED_CAP}"),
    "U3-cli-split-seed": (*cli("train", *TINY, "--split-seed", BIG), "`split_seed`"),
    "U3-cli-config-seed": (*cli("train", *TINY, "--config", "{up}/seed.json"), SEED_CAP),
    "U3-cli-chat-seed": (*cli("chat", *TINY, "--prompt", "hi", "--seed", BIG), "`seed`"),
    "U3-ui-launch-seed": (*ui(lambda c: train.on_launch(c.full, form(seed=2**70))), SEED_CAP),
    # U4: every data setting is checked before a run folder exists
    "U4-cli-topics": (*cli("train", *TINY, "--topics", "nope"), "unknown topic(s) nope"),
    "U4-cli-hf-empty": (*cli("train", *TINY, "--corpus", "hf:"), "hf:NAME"),
    "U4-cli-hf-offline": (*cli("train", *TINY, "--corpus", "hf:nobody/nothing"), "nobody"),
    "U4-cli-eval-missing": (
        *cli("train", *TINY, "--corpus", "{up}/notes.txt", "--eval-corpus", "{up}/nope.txt"),
        "`eval_corpus`",
    ),  # fmt: skip
    "U4-cli-eval-kind": (
        *cli("train", *TINY, "--corpus", "{up}/notes.txt", "--eval-corpus", "chatterbot"),
        "validate on the same kind",
    ),  # fmt: skip
    # U5: data nested past the recursion limit
    "U5-cli-deep-config": (*cli("train", "--config", "{up}/deep.json"), "nested too deeply"),
    "U5-cli-deep-jsonl": (*cli("train", *TINY, "--corpus", "{up}/deep.jsonl"), "too deeply"),
    "U5-cli-deep-yml": (*cli("train", *TINY, "--corpus", "{up}/deep.yml"), "too deeply"),
    "U5-lib-deep-json": (*lib(lambda c: RunConfig.from_json("[" * 10**5)), "too deeply"),
    # U7: run ids that later commands would read as flags
    "U7-cli-name-dash": (*cli("train", *TINY, "--name=-x"), "must not start with '-'"),
    "U7-cli-sweep-prefix": (
        *cli("sweep", *TINY, "--prefix", "", "--variants", "lora", "--steps", "1"),
        "must not start with '-'",
    ),  # fmt: skip
    "U7-lib-open-dash": (*lib(lambda c: open_run("-x", c.root)), "must not start with '-'"),
    # U8: what an API caller can send, each a clear message
    "U8-ui-launch-model-type": (
        *ui(lambda c: train.on_launch(c.full, form(model={"a": 1}))),
        "`model` = {'a': 1} must be text",
    ),  # fmt: skip
    "U8-ui-launch-hidden": (
        *ui(lambda c: train.on_launch(c.full, form(hidden_sizes="16,abc"))),
        "`hidden_sizes` = 'abc'",
    ),  # fmt: skip
    "U8-ui-chat-history": (
        *ui(lambda c: chat.on_send(c.full, "hi", "oops", "tiny-llama", "", 8, 0.7, 0.9)),
        "`history` must be a list",
    ),  # fmt: skip
    "U8-ui-chat-message": (
        *ui(lambda c: chat.on_send(c.full, "hi", [{"role": 1}], "tiny-llama", "", 8, 0.7, 0.9)),
        "`history` must be a list",
    ),  # fmt: skip
    "U8-ui-chat-model-type": (
        *ui(lambda c: chat.on_send(c.full, "hi", [], {"a": 1}, "", 8, 0.7, 0.9)),
        "must be text",
    ),  # fmt: skip
    "U8-ui-chat-tokens-nan": (
        *ui(lambda c: chat.on_send(c.full, "hi", [], "tiny-llama", "", "nan", 0.7, 0.9)),
        "`max_new_tokens` = nan",
    ),  # fmt: skip
    "U8-ui-count-types": (
        *ui(lambda c: design.count_api(c.full)(1, rank="x")),
        "`model` = 1 must be text",
    ),  # fmt: skip
    "U8-ui-variance-qubits": (
        *ui(lambda c: results.on_variance(c.full, "abc", "2", "local", 20)),
        "`qubits` = 'abc'",
    ),  # fmt: skip
    "U8-ui-runs-type": (*ui(lambda c: runs.on_refresh(c.full, 5)), "must be a list of run ids"),
    "U8-ui-open-type": (*ui(lambda c: runs.on_open(c.full, {"a": 1})), "not a valid run id"),
    "U8-ui-cancel-type": (*ui(lambda c: train.on_cancel(c.full, 5)), "list of run ids"),
    # U10, U11
    "U10-cli-model-empty": (*cli("count", "--model", ""), "`model` is empty"),
    "U11-cli-export-into-run": (
        *cli("export", "--run", "done", "--out", "{root}/done/adapter/sub"),
        "is inside run done",
    ),  # fmt: skip
}


CASES = {  # id: (kind, call, what the message must say)
    # -- CLI: out of range, wrong type, inconsistent, unknown, bad files, bad ids
    "cli-steps-zero": (*cli("train", *TINY, "--steps", "0"), "`steps` = 0 must be ≥ 1"),
    "cli-steps-text": (*cli("train", "--steps", "many"), "invalid int value: 'many'"),
    "cli-steps-negative": (*cli("train", *TINY, "--steps", "-5"), "`steps` = -5 must be ≥ 1"),
    "cli-batch-zero": (*cli("train", *TINY, "--batch-size", "0"), "`batch_size` = 0 must be ≥ 1"),
    "cli-batch-negative": (*cli("train", "--batch-size", "-8", "--dry-run"), "`batch_size` = -8"),
    "cli-patience-negative": (*cli("train", "--patience", "-1"), "`patience` = -1 must be ≥ 0"),
    "cli-patience-too-many": (
        *cli("train", *TINY, "--steps", "10", "--eval-every", "5", "--patience", "2"),
        "`patience` = 2 evaluations can never stop this run: it validates 2 time(s)",
    ),  # fmt: skip
    "cli-dry-run-patience": (
        *cli("train", "--dry-run", "--steps", "50", "--patience", "9"), "use at most 1,"
    ),  # fmt: skip
    "cli-topics-no-conversations": (
        *cli("train", *TINY, "--topics", "health"),
        "`topics` = 'health' is too small: 1 example(s) leave none for training",
    ),  # fmt: skip
    "cli-val-split-zero": (*cli("train", *TINY, "--val-fraction", "0"), "`val_fraction` = 0.0"),
    "cli-lr-negative": (*cli("train", "--lr", "-1"), "`lr` = -1.0 must be ≥ 0"),
    "cli-rank-zero": (*cli("count", "--rank", "0"), "`rank` = 0"),
    "cli-chunk-negative": (*cli("count", "--chunk-size", "-5"), "`chunk_size` = -5"),
    "cli-too-few-qubits": (
        *cli("train", *TINY, "--chunk-size", "64", "--n-qubits", "2"),
        "`n_qubits` = 2 gives 4 chunks",
    ),  # fmt: skip
    "cli-entangler": (*cli("count", "--entangler", "star"), "invalid choice: 'star'"),
    "cli-unknown-model": (
        *cli("train", "--model", "nobody/no-such-model"),
        "`model` = 'nobody/no-such-model'",
    ),  # fmt: skip
    "cli-unknown-module": (
        *cli("train", *TINY, "--target-modules", "q_proj,warp_core"),
        "`target_modules`",
    ),  # fmt: skip
    "cli-shape-preset": (*cli("train", "--model", "gpt2-config"), "shape-only preset"),
    "cli-missing-corpus": (*cli("train", *TINY, "--corpus", "{up}/nope.txt"), "`corpus`"),
    "cli-empty-corpus": (*cli("train", *TINY, "--corpus", "{up}/empty.txt"), "is empty"),
    "cli-binary-corpus": (*cli("train", *TINY, "--corpus", "{up}/binary.txt"), "looks binary"),
    "cli-latin1-corpus": (*cli("train", *TINY, "--corpus", "{up}/latin1.txt"), "not UTF-8"),
    "cli-huge-corpus": (*cli("train", *TINY, "--corpus", "{up}/huge.txt"), "too large"),
    "cli-yaml-python-tag": (*cli("train", *TINY, "--corpus", "{up}/tags.yml"), "tags.yml"),
    "cli-bad-config": (*cli("train", "--config", "{up}/bad.json"), "`config`"),
    "cli-config-unknown-key": (*cli("train", "--config", "{up}/unknown-key.json"), "nope"),
    "cli-name-escape": (*cli("train", *TINY, "--name", "../escape"), "not a valid run id"),
    "cli-resume-escape": (*cli("train", "--resume", "../../etc"), "not a valid run id"),
    "cli-resume-done": (*cli("train", "--resume", "done"), "is done"),
    "cli-resume-with-flags": (*cli("train", "--resume", "done", "--steps", "9"), "drop --steps"),
    "cli-show-escape": (*cli("runs", "show", "../../etc/passwd"), "not a valid run id"),
    "cli-cancel-unknown": (*cli("runs", "cancel", "nobody"), "`run` = 'nobody' not found"),
    "cli-export-escape": (*cli("export", "--run", "..", "--out", "{up}/x"), "not a valid run id"),
    "cli-eval-hidden": (*cli("eval", "--run", ".jobs"), "must not start with '.'"),
    "cli-chat-tokens": (
        *cli("chat", *TINY, "--prompt", "hi", "--max-new-tokens", "0"),
        "`max_new_tokens` = 0",
    ),  # fmt: skip
    "cli-chat-top-p": (*cli("chat", *TINY, "--prompt", "hi", "--top-p", "2"), "`top_p` = 2.0"),
    "cli-chat-long-prompt": (*cli("chat", *TINY, "--prompt", LONG), "the model's context"),
    # -- library
    "lib-config-json": (*lib(lambda c: RunConfig.from_json("{not json")), "JSON"),
    "lib-config-type": (
        *lib(lambda c: RunConfig.from_dict({"train": {"steps": "many"}})),
        "`steps` = 'many' must be a whole number",
    ),  # fmt: skip
    "lib-patience": (
        *lib(lambda c: RunConfig.from_dict({"train": {"steps": 10, "eval_every": 5, "patience": 3}})),
        "`patience` = 3 evaluations can never stop this run",
    ),  # fmt: skip
    "lib-val-fraction": (
        *lib(lambda c: RunConfig.from_dict({"data": {"val_fraction": 0}})),
        "`val_fraction` = 0.0 must be > 0",
    ),  # fmt: skip
    "lib-config-nan": (
        *lib(lambda c: RunConfig.from_dict({"train": {"lr": float("nan")}})),
        "finite",
    ),  # fmt: skip
    "lib-too-few-qubits": (
        *lib(
            lambda c: count_params(
                "gpt2-config", AdapterConfig(rank=4), QPAConfig(chunk_size=2048, n_qubits=3)
            )
        ),
        "`n_qubits` = 3",
    ),  # fmt: skip
    "lib-open-escape": (*lib(lambda c: open_run("../done", c.root)), "not a valid run id"),
    "lib-open-absolute": (*lib(lambda c: open_run("/etc", c.root)), "not a valid run id"),
    "lib-load-shape": (*lib(lambda c: load_model("gemma-config")), "shape-only preset"),
    "lib-upload-dir": (*lib(lambda c: check_upload(c.up / "dir.txt")), "`corpus`"),
    "lib-upload-custom-tag": (*lib(lambda c: check_upload(c.up / "custom.yml")), "custom.yml"),
    "lib-upload-broken-yaml": (*lib(lambda c: check_upload(c.up / "broken.yml")), "broken.yml"),
    "lib-upload-blank": (*lib(lambda c: check_upload(c.up / "blank.txt")), "blank.txt"),
    "lib-upload-role": (*lib(lambda c: check_upload(c.up / "wrong.jsonl")), "wizard"),
    "lib-messages-role": (
        *lib(lambda c: check_messages([{"role": "wizard", "content": "x"}])),
        "role 'wizard'",
    ),  # fmt: skip
    "lib-chat-long": (
        *lib(
            lambda c: get_chat_model("tiny-llama").reply(
                [{"role": "user", "content": LONG}], max_new_tokens=2
            )
        ),
        "the model's context",
    ),  # fmt: skip
    # -- UI handlers (what a visitor or an API client can send)
    "ui-rank-text": (
        *ui(lambda c: design.on_change(c.full, {**GPT2, "rank": "four"})),
        "`rank` = 'four'",
    ),  # fmt: skip
    "ui-too-few-qubits": (
        *ui(lambda c: design.on_qubits(c.full, {**GPT2, "n_qubits": 30})), "1 and 24"
    ),  # fmt: skip
    "ui-count-api-chunk": (
        *ui(lambda c: design.count_api(c.full)("gpt2-config", chunk_size=-1)),
        "`chunk_size` = -1",
    ),  # fmt: skip
    "ui-unknown-module": (
        *ui(lambda c: design.on_change(c.full, {**GPT2, "target_modules": ["warp"]})),
        "`target_modules` entry 'warp'",
    ),  # fmt: skip
    "ui-launch-steps": (*ui(lambda c: train.on_launch(c.full, form(steps=-3))), "`steps` = -3"),
    "ui-launch-lr": (*ui(lambda c: train.on_launch(c.full, form(lr="fast"))), "`lr` = 'fast'"),
    "ui-launch-batch": (
        *ui(lambda c: train.on_launch(c.full, form(batch_size=0))), "`batch_size` = 0"
    ),  # fmt: skip
    "ui-launch-patience": (
        *ui(lambda c: train.on_launch(c.full, form(patience=2))),  # 3 steps, every 2: 2 evals
        "`patience` = 2 evaluations can never stop this run",
    ),  # fmt: skip
    "ui-launch-topics": (
        *ui(lambda c: train.on_launch(c.full, form(topics=["health"]))),
        "`topics` = 'health' is too small",
    ),  # fmt: skip
    "ui-plan-topics": (
        *ui(lambda c: train.on_plan({k: tiny_form(topics=["health"])[k] for k in train.PLAN_FIELDS})),
        "`topics` = 'health' is too small",
    ),  # fmt: skip
    "ui-launch-plan": (*ui(lambda c: train.on_launch(c.full, form(plan="all"))), "`plan`"),
    "ui-launch-demo-cap": (
        *ui(lambda c: train.on_launch(c.demo, form(steps=10_000))),
        "demo's cap",
    ),  # fmt: skip
    "ui-launch-demo-model": (
        *ui(lambda c: train.on_launch(c.demo, form(model="org/huge-70b"))),
        "this demo loads only",
    ),  # fmt: skip
    "ui-launch-binary": (
        *ui(
            lambda c: train.on_launch(
                c.full, form(source=data.SOURCES[1], upload=str(c.up / "binary.txt"))
            )
        ),
        "looks binary",
    ),  # fmt: skip
    "ui-upload-latin1": (*ui(lambda c: data.on_upload(str(c.up / "latin1.txt"))), "not UTF-8"),
    "ui-upload-tags": (*ui(lambda c: data.on_upload(str(c.up / "tags.yml"))), "tags.yml"),
    "ui-upload-huge": (*ui(lambda c: data.on_upload(str(c.up / "huge.txt"))), "too large"),
    "ui-upload-exe": (
        *ui(lambda c: data.on_upload(str(c.up / "program.exe"))),
        "unknown file type",
    ),  # fmt: skip
    "ui-preview-jsonl": (
        *ui(
            lambda c: data.on_preview(
                c.full, preview("tiny-llama", data.SOURCES[1], [], str(c.up / "bad.jsonl"), 48, 0)
            )
        ),
        "bad.jsonl",
    ),  # fmt: skip
    "ui-chat-long": (
        *ui(lambda c: chat.on_send(c.full, LONG, [], "tiny-llama", "", 8, 0.7, 0.9)),
        "the cap here is 32,000",
    ),  # fmt: skip
    "ui-chat-demo-tokens": (
        *ui(lambda c: chat.on_send(c.demo, "hi", [], "tiny-llama", "", 5000, 0.7, 0.9)),
        "above the cap of 96",
    ),  # fmt: skip
    "ui-chat-escape": (
        *ui(lambda c: chat.on_send(c.full, "hi", [], "tiny-llama", "../../etc", 8, 0.7, 0.9)),
        "not a valid run id",
    ),  # fmt: skip
    "ui-chat-temperature": (
        *ui(lambda c: chat.on_send(c.full, "hi", [], "tiny-llama", "", 8, "hot", 0.9)),
        "`temperature` = 'hot'",
    ),  # fmt: skip
    "ui-compare-escape": (
        *ui(lambda c: chat.on_compare(c.full, "hi", "tiny-llama", "../x", "", 8, 0.7, 0.9)),
        "not a valid run id",
    ),  # fmt: skip
    "ui-pick-escape": (*ui(lambda c: chat.on_pick_run(c.full, "../done")), "not a valid run id"),
    "ui-open-escape": (
        *ui(lambda c: runs.on_open(c.full, "../../etc/passwd")),
        "not a valid run id",
    ),  # fmt: skip
    "ui-open-unknown": (*ui(lambda c: runs.on_open(c.full, "nobody")), "not found"),
    "ui-cancel-escape": (*ui(lambda c: train.on_cancel(c.full, ["../done"])), "not a valid run id"),
    "ui-cancel-done": (*ui(lambda c: train.on_cancel(c.full, ["done"])), "nothing to cancel"),
    "ui-watch-escape": (
        *ui(lambda c: train.on_refresh(c.full, ["../../x"], "")),
        "not a valid run id",
    ),  # fmt: skip
    **PROBE_CASES,
}


def call_ui(fn, c) -> list[str]:
    """Call a handler (draining a generator); what the visitor sees: the gr.Warning texts, a
    gr.Error's message (API endpoints), and the outputs (an error card)."""
    import gradio as gr

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn(c)
            if hasattr(result, "__next__"):
                result = list(result)
        except gr.Error as e:
            result = f"gr.Error: {e.message}"
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)] + [str(result)]


@pytest.fixture
def offline(ctx, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import
    monkeypatch.setenv("QPA_RUNS", str(ctx.root))
    monkeypatch.setenv("QPA_HOME", str(ctx.up / "home"))
    monkeypatch.delenv("QPA_DEBUG", raising=False)


def test_the_matrix_is_big_and_covers_every_surface():
    kinds = [kind for kind, _, _ in CASES.values()]
    assert len(CASES) >= 100 and {kinds.count(k) >= 15 for k in ("cli", "lib", "ui")} == {True}


@pytest.mark.chatterbot
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_clear_message_and_changes_nothing(case, ctx, offline, capsys):
    kind, call, expected = CASES[case]
    before = tree_hash(ctx.root)
    if kind == "cli":
        argv = [a.format(up=ctx.up, root=ctx.root) for a in call]
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own usage errors
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and "error:" in err and "Traceback" not in err, err
        assert expected in err, err
    elif kind == "lib":
        with pytest.raises(ValueError) as error:
            call(ctx)
        assert expected in str(error.value)
    else:
        messages = call_ui(call, ctx)
        assert any(expected in m for m in messages), messages
        assert not any("Traceback" in m for m in messages)
    assert tree_hash(ctx.root) == before
    assert os.listdir(ctx.root) == ["done"]  # not even a hidden folder appeared
