"""Adapters that load anywhere, the model card, and pushing to the Hub.

A tiny model saved as a local folder stands in for a Hub model (nothing is downloaded). The
push paths run against a small local HTTP server that answers the Hub's `whoami` and
`repos/create` endpoints the way the Hub does for a bad, a read-only and a foreign-namespace
token, so the error translation is tested on real HTTP responses.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from qpa.adapters.export import export_adapter
from qpa.adapters.model_card import CARD_FILE, hub_base_model, model_card
from qpa.adapters.qpa_lora import build_adapter
from qpa.cli.main import main
from qpa.config import AdapterConfig, DataConfig, ModelConfig, QPAConfig, RunConfig, TrainConfig
from qpa.constants import HUB_ID
from qpa.hub.push import check_repo_id, hub_reachable, push_run
from qpa.models.loading import load_model
from qpa.runs.store import create_run, open_run
from qpa.training.loop import train


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """tiny-llama saved as a local model folder, as a downloaded Hub model would be."""
    folder = tmp_path_factory.mktemp("base") / "tiny-llama-folder"
    model, tok = load_model("tiny-llama")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory, base_dir):
    """A finished 4-step QPA run of the local tiny model on a small text corpus."""
    root = tmp_path_factory.mktemp("runs")
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(f"Line {i} of a small corpus about qubits." for i in range(40)))
    config = RunConfig(
        model=ModelConfig(model=str(base_dir)),
        adapter=AdapterConfig(rank=2),
        qpa=QPAConfig(chunk_size=64, depth=2, start="offset"),
        data=DataConfig(corpus=str(corpus), max_length=16),
        train=TrainConfig(steps=4, eval_every=2, batch_size=4),
    )
    run = create_run(config, root, name="hubrun")
    train(config, run)
    return run


def test_adapter_config_names_the_hub_id_and_the_task():
    model, qpa = build_adapter(load_model("tiny-llama")[0], AdapterConfig(rank=2),
                               QPAConfig(chunk_size=64, depth=2))  # fmt: skip
    import tempfile

    folder = export_adapter(model, qpa, f"{tempfile.mkdtemp()}/a", base_model="smollm2")
    meta = json.loads((folder / "adapter_config.json").read_text())
    assert meta["base_model_name_or_path"] == HUB_ID == hub_base_model("smollm2")
    assert meta["task_type"] == "CAUSAL_LM"


def test_a_run_adapter_loads_with_auto_peft(run, base_dir):
    from peft import AutoPeftModelForCausalLM, PeftModel

    meta = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert meta["base_model_name_or_path"] == str(base_dir.resolve())
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    auto = AutoPeftModelForCausalLM.from_pretrained(run.adapter_dir).eval()
    plain = PeftModel.from_pretrained(load_model(str(base_dir))[0], run.adapter_dir).eval()
    base = load_model(str(base_dir))[0]
    with torch.no_grad():
        got, expected, before = auto(ids).logits, plain(ids).logits, base(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert (got - before).abs().max() > 1e-4  # the adapter is applied, not skipped


def test_the_model_card_records_the_run(run):
    from huggingface_hub import ModelCard

    card = ModelCard.load(run.adapter_dir / CARD_FILE)
    assert card.data.library_name == "peft"
    assert "qpa" in card.data.tags and "peft" in card.data.tags
    text = card.text
    assert "simulated, not run on quantum hardware" in text
    last, first = run.metrics("val")[-1], run.metrics("val")[0]
    assert f"{last['perplexity']:.3f}" in text  # this adapter's perplexity
    assert f"| base model | {first['perplexity']:.3f}" in text  # offset start: step 0 = base
    assert "| chunk size, chunks | 64," in text and "padding masked" in text
    assert "AutoPeftModelForCausalLM" in text and "arXiv 2410.09846" in text
    assert f"{run.status()['trainable_params']:,} = " in text  # against the matched LoRA


def test_an_old_run_exports_with_the_hub_id_and_a_card(run, base_dir, tmp_path, capsys):
    from peft import AutoPeftModelForCausalLM

    path = run.adapter_dir / "adapter_config.json"
    saved = path.read_text(), (run.adapter_dir / CARD_FILE).read_text()
    old = {k: v for k, v in json.loads(saved[0]).items() if k != "task_type"}
    path.write_text(json.dumps({**old, "base_model_name_or_path": "an-alias"}))
    (run.adapter_dir / CARD_FILE).unlink()  # as a run written before cards existed
    try:
        out = tmp_path / "export"
        assert (
            main(["export", "--run", run.id, "--out", str(out), "--runs-dir", str(run.path.parent)])
            == 0
        )
        meta = json.loads((out / "adapter_config.json").read_text())
        assert meta["task_type"] == "CAUSAL_LM"
        assert meta["base_model_name_or_path"] == str(base_dir.resolve())
        assert (out / CARD_FILE).read_text() == model_card(run)
        AutoPeftModelForCausalLM.from_pretrained(out)
    finally:
        path.write_text(saved[0])
        (run.adapter_dir / CARD_FILE).write_text(saved[1])


def test_a_merged_export_gets_a_transformers_card(run, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    argv = [
        "export",
        "--run",
        run.id,
        "--out",
        str(out),
        "--merged",
        "--runs-dir",
        str(run.path.parent),
    ]
    assert main(argv) == 0
    assert ModelCard.load(out / CARD_FILE).data.library_name == "transformers"
    AutoModelForCausalLM.from_pretrained(out)


# -- push -----------------------------------------------------------------------------------------


class FakeHub(BaseHTTPRequestHandler):
    """The Hub's answers for tokens `bad` (401), `reader` (read role) and `writer` (write role,
    but creating a repo outside its namespace is refused with 403, and no repo exists)."""

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if not self.path.startswith("/api/whoami-v2"):  # repo_info of a repo that does not exist
            return self._send(404, {"error": "Repository not found"})
        token = self.headers.get("authorization", "").removeprefix("Bearer ")
        if token == "bad":
            return self._send(401, {"error": "Invalid credentials in Authorization header"})
        role = "read" if token == "reader" else "write"
        return self._send(200, {"name": "me", "auth": {"accessToken": {"role": role}}})

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._send(
            403, {"error": "You don't have the rights to create a model under this namespace"}
        )

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize(
    "token, expected",
    [
        ("bad", "the Hub rejected it"),
        ("reader", "is read-only"),
        ("writer", "may not write there"),
    ],
)
def test_push_says_why_the_hub_refused(run, fake_hub, monkeypatch, token, expected):
    import huggingface_hub

    monkeypatch.setenv("HF_ENDPOINT", fake_hub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # CI sets it; huggingface_hub read it
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # at import
    with pytest.raises(ValueError, match=expected):
        push_run(run, "someone-else/adapter", token=token)


def test_push_without_a_token_or_a_network_fails_at_once(run, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    root = str(run.path.parent)
    tic = time.perf_counter()
    assert main(["push", "--run", run.id, "--repo", "me/x", "--runs-dir", root]) == 2
    assert "no Hugging Face token. Set HF_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["push", "--run", run.id, "--repo", "me/x", "--runs-dir", root]) == 2
    err = capsys.readouterr().err
    assert "cannot be reached from here (offline); nothing was pushed" in err
    assert "x" * 30 not in err  # the token never reaches the message
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    assert not hub_reachable()
    assert main(["push", "--run", run.id, "--repo", "me/x", "--runs-dir", root]) == 2
    assert time.perf_counter() - tic < 10  # nothing waits on retries


def test_push_checks_the_repo_and_the_run_first(tmp_path):
    for bad in ("noslash", "a/b/c", "me/../x", "/x", "me/x.git"):
        with pytest.raises(ValueError, match="`repo`"):
            check_repo_id(bad)
    create_run(RunConfig(model=ModelConfig("tiny-llama")), tmp_path, name="q")
    with pytest.raises(ValueError, match="has no exported adapter"):
        push_run(open_run("q", tmp_path), "me/x", token="t")


def test_an_uncached_hub_id_fails_at_once_offline(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a Hub that cannot answer
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    tic = time.perf_counter()
    for name in ("foo/bar", "someone/some-model"):
        with pytest.raises(ValueError, match="the Hub cannot be reached \\(offline\\)"):
            load_model(name)
    assert time.perf_counter() - tic < 5  # huggingface_hub's own retries took 23-31 s here


def test_the_design_tab_keeps_form_and_counts_together_offline(monkeypatch):
    pytest.importorskip("gradio")
    import warnings

    from app.handlers import design
    from app.state import Studio

    studio = Studio.create(runs_root="unused-runs", demo=False)  # the handler reads its caps
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert design.on_model_typed(" foo/bar ") == "Checking `foo/bar`…"
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gr.Warning outside a request
        targets, box, status, counted = design.on_model(studio, "foo/bar", ["lm_head"], "smollm2")
    assert time.perf_counter() - tic < 2
    assert box == counted == "smollm2"  # the box goes back to the model the counts show
    assert status.startswith("Kept `smollm2`:") and "cannot be reached (offline)" in status
    targets, _, status, counted = design.on_model(studio, "tiny-gpt2", ["lm_head"], "smollm2")
    assert counted == "tiny-gpt2" and status == "" and targets["value"] == ["lm_head"]
