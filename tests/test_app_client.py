"""The app over HTTP: launched in-process on 127.0.0.1 and called with gradio_client."""

import pytest
from conftest import served_studio

gradio_client = pytest.importorskip("gradio_client")

HIDDEN = "32,64,128,128,64,32,32"
QUIET = [  # gradio's own pandas calls warn on pandas 3; not ours to fix
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated.*"),
]
pytestmark = QUIET


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with served_studio(tmp_path_factory.mktemp("runs")) as url:
        yield gradio_client.Client(url, verbose=False)


def test_count_params_endpoint_gives_the_paper_numbers(client):
    counts = client.predict(
        "gpt2-config", "lm_head", 4, 2048, 0, 8, HIDDEN, api_name="/count_params"
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


def test_bad_input_is_a_warning_not_an_error(client):
    job = client.submit(
        "gpt2-config", ["lm_head"], 4, 2048, 7, 8, "32,x", "ladder", api_name="/design"
    )
    job.result(timeout=30)  # no exception: the handler warned and changed nothing
    assert job.status().success


def test_advanced_shape_over_the_api(client):
    counts = client.predict(
        "gpt2-config", "lm_head", 4, 2048, 0, 8, HIDDEN, "ladder", "gelu", api_name="/count_params"
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
