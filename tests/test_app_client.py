"""The app over HTTP: launched in-process on 127.0.0.1 and called with gradio_client."""

import json
import os
import shutil
import stat
from pathlib import Path

import httpx
import pytest
from conftest import served_studio
from tiny_run import TINY_RUN, tiny_form

from app.handlers import train
from qpa import create_run

gradio_client = pytest.importorskip("gradio_client")
AppError = gradio_client.exceptions.AppError

HIDDEN = "32,64,128,128,64,32,32"
QUIET = [  # gradio's own pandas calls warn on pandas 3; not ours to fix
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated.*"),
]
pytestmark = QUIET


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    with served_studio(root) as url:
        yield root, url


@pytest.fixture(scope="module")
def client(served):
    return gradio_client.Client(served[1], verbose=False)


@pytest.fixture(scope="module")
def demo_client(tmp_path_factory):
    with served_studio(tmp_path_factory.mktemp("demo-runs"), demo=True) as url:
        yield gradio_client.Client(url, verbose=False)


def finished_run(root: Path, name: str) -> None:
    """A done run with adapter files, made beside the root and renamed in whole, so the
    studio's queue never sees it queued."""
    staging = root.parent / f"staging-{name}"
    run = create_run(TINY_RUN, staging, name=name)
    run.adapter_dir.mkdir()
    for file in ("adapter_config.json", "adapter_model.safetensors"):
        (run.adapter_dir / file).write_text("{}")
    run.set_status("done", step=2)
    os.rename(run.path, root / name)
    shutil.rmtree(staging)


def test_count_params_endpoint_gives_the_paper_numbers(client):
    counts = client.predict(  # the paper's mapping: no activation, no Fourier features
        "gpt2-config", "lm_head", 4, 2048, 0, 8, HIDDEN, "ladder", "none", 0,
        api_name="/count_params",
    )
    assert (counts["qpa"], counts["lora"], counts["n_qubits"]) == (106_264, 204_100, 7)
    assert f"{counts['ratio']:.2%}" == "52.06%"


def test_live_design_endpoint_updates_table_and_links_qubits(client):
    out = client.predict(
        "gpt2-config", ["lm_head"], 4, 1024, 7, 8, HIDDEN, "ladder", api_name="/design_chunk"
    )
    chunk, n_qubits, table = out[0], out[1], out[2]
    assert (chunk, n_qubits) == (1024, 8)
    rows = {row[0]: row[1] for row in table["data"]}
    assert rows["LoRA baseline"] == "204,100"


def test_bad_input_reaches_the_api_caller_as_the_pages_message(client):
    with pytest.raises(AppError, match="`hidden_sizes` = 'x' must be a whole number"):
        client.predict(
            "gpt2-config", ["lm_head"], 4, 2048, 7, 8, "32,x", "ladder", api_name="/design"
        )


def test_advanced_shape_over_the_api(client):
    counts = client.predict(
        "gpt2-config", "lm_head", 4, 2048, 0, 8, HIDDEN, "ladder", "gelu", 0,
        api_name="/count_params",
    )
    assert (counts["qpa"], counts["rank_ceiling"]) == (106_264, 33)
    out = client.predict(
        "gpt2-config", ["lm_head"], 4, 2048, 7, 8, HIDDEN, "ladder", "none", 0, "random",
        "shared", True, "trainable", "differentiated", 0, 0.0, api_name="/design_chunk",
    )  # fmt: skip
    rows = {row[0]: row[1] for row in out[2]["data"]}
    assert rows["DoRA magnitudes"] == "50,257"
    assert "--use-dora --dora-norm differentiated" in out[7]


def test_results_and_gradient_variance_endpoints(client):
    _, table, _ = client.predict("all tokens", api_name="/results")
    assert table == "*No finished runs yet.*"  # a fresh runs folder
    _, note = client.predict("2,4", "2", "global", 20, api_name="/gradient_variance")
    assert note.startswith("2 points in") and "P(|0…0⟩)" in note


# -- the reliability probe of issue #17, over HTTP --------------------------------------------------


def example_args(endpoint: dict) -> list:
    """Arguments that pass every check but the model's: each parameter's default (or example),
    files left out, text messages filled in."""
    args = []
    for p in endpoint["parameters"]:
        value = p["parameter_default"] if p["parameter_has_default"] else p["example_input"]
        if p["parameter_name"] in ("message", "prompt"):
            value = "hi"
        elif "File" in str(p["python_type"]["type"]) or isinstance(value, dict):
            value = None
        args.append(value)
    return args


def test_every_endpoint_taking_a_model_applies_the_demos_cap(demo_client, tmp_path):
    """L1, L2: a demo reads only its preset models, on every endpoint that takes one."""
    endpoints = demo_client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    checked = []
    for name, endpoint in endpoints.items():
        params = endpoint["parameters"]
        at = [i for i, p in enumerate(params) if p["parameter_name"] == "model"
              or p["label"] == "Base model"]  # fmt: skip
        if not at:
            continue
        args = example_args(endpoint)
        args[at[0]] = str(tmp_path)  # a local folder: out of the demo's cap
        with pytest.raises(AppError, match="this demo loads only"):
            demo_client.predict(*args, api_name=name)
        checked.append(name)
    assert set(checked) == {"/design_chunk", "/design", "/design_qubits", "/count_params",
                            "/preview_data", "/launch", "/chat", "/compare"}  # fmt: skip


def test_bad_launch_values_reach_the_api_caller(served, client):
    """U8: a bad field is a clear error for API callers, never a silent no-op; gradio's own
    input errors (a word for a number, too few values) carry a message too."""
    root, url = served
    form = tiny_form(n_qubits=3, hidden_sizes="16,abc")
    with pytest.raises(AppError, match="`hidden_sizes` = 'abc'"):
        client.predict(*[form[k] for k in train.FORM_FIELDS], api_name="/launch")
    for data in (
        [form[k] if k != "steps" else "abc" for k in train.FORM_FIELDS],  # a word for a number
        [form[k] for k in train.FORM_FIELDS][:5],  # too few values
    ):
        event = httpx.post(f"{url}gradio_api/call/launch", json={"data": data}).json()["event_id"]
        stream = httpx.get(f"{url}gradio_api/call/launch/{event}", timeout=30).text
        error = json.loads(stream.split("event: error\ndata: ", 1)[1].splitlines()[0])
        assert error["error"], stream  # a message, not null
    assert not [p for p in root.iterdir() if not p.name.startswith(".")]  # nothing queued


def test_run_pickers_take_runs_created_after_the_page(served, client):
    """U9: open, chat and cancel accept runs newer than the app's start, without a refresh."""
    root, url = served
    finished_run(root, "later")
    config, log, download = gradio_client.Client(url, verbose=False).predict(
        "later", api_name="/open_run"
    )
    assert '"tiny-llama"' in config and download
    with pytest.raises(AppError, match="nothing to cancel"):  # done: refused for that reason
        client.predict(["later"], api_name="/cancel")
    with pytest.raises(AppError, match="not a valid run id"):
        client.predict("../later", api_name="/open_run")


def test_adapter_zips_are_served_from_a_private_folder(served, client):
    """L3: gradio copies a served file into its cache; that cache is 0700."""
    root, _ = served
    finished_run(root, "zipped")
    client.predict("zipped", api_name="/open_run")
    cache = Path(os.environ["GRADIO_TEMP_DIR"])
    assert list(cache.rglob("zipped-adapter.zip"))
    assert stat.S_IMODE(cache.stat().st_mode) & 0o077 == 0
