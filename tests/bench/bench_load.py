"""Load on loopback: many gradio_client sessions count parameters and chat while a run trains.

The studio runs as its own process (``python app.py``) on 127.0.0.1 with a private runs root; a
long tiny-llama run launched through it trains in the background (as the queue starts it, at
lower priority); then `clients` sessions
each send `requests` live parameter counts (``/count_params``) and `chats` further sessions one
chat request each (``/chat``, tiny-llama), all at once. Prints p50/p95 latency and the error
count per endpoint; `tests/test_load.py` runs the same with a loose bound.

    python tests/bench/bench_load.py [--clients 20] [--requests 20] [--chats 5] [--no-training]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

HIDDEN = "32,64,128,128,64,32,32"
TRAIN_FORM = {
    "model": "tiny-llama", "target_modules": ["lm_head"], "rank": 2, "chunk_size": 128,
    "n_qubits": 3, "depth": 2, "hidden_sizes": "16,16", "entangler": "ladder",
    "plan": "QPA only", "steps": 100_000, "batch_size": 4, "lr": 0, "eval_every": 10_000, "patience": 0,
    "max_length": 48, "max_examples": 40, "seed": 0, "perplexity": "masked",
    "source": "chatterbot corpus",
    "topics": ["ai"], "upload": None,
}  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(q * len(ranked)) - 1))]


def serve(root: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``python app.py`` (its own process, as deployed) on a free loopback port: (proc, url)."""
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "QPA_RUNS": str(root), "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url, deadline = f"http://127.0.0.1:{port}/", time.time() + 120
    while True:
        if proc.poll() is not None or time.time() > deadline:
            stop(proc)
            raise RuntimeError(f"the app did not start:\n{log.read_text()[-2000:]}")
        try:
            Client(url, verbose=False)
            return proc, url
        except Exception:  # not listening yet
            time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """End the app process (and its process group); its runs are separate sessions."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_training(url: str, root: Path, timeout: float = 120) -> str:
    """Launch a long tiny run through the app and wait until it trains; returns its id."""
    from gradio_client import Client

    from app.handlers.shape import DEFAULTS
    from app.handlers.train import FORM_FIELDS
    from qpa import list_runs

    form = {**DEFAULTS, "loss_on": "assistant", **TRAIN_FORM}  # advanced shape: the defaults
    Client(url, verbose=False).predict(*[form[k] for k in FORM_FIELDS], api_name="/launch")
    (run,) = list_runs(root)
    deadline = time.time() + timeout
    while (status := run.status()).get("step", 0) < 1:
        if status["state"] not in ("queued", "running") or time.time() > deadline:
            raise RuntimeError(f"the background run did not start: {status}")
        time.sleep(0.2)
    return run.id


def _session(url: str, calls: list, out: dict, start: threading.Barrier) -> None:
    """One gradio_client session making `calls` in turn, timing each."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    start.wait()
    for endpoint, args in calls:
        tic = time.perf_counter()
        try:
            client.predict(*args, api_name=endpoint)
            out.setdefault(endpoint, []).append(time.perf_counter() - tic)
        except Exception as e:  # counted and reported, not raised: this is a measurement
            out.setdefault("errors", []).append(f"{endpoint}: {type(e).__name__}: {e}")


def measure(url: str, clients: int = 20, requests: int = 20, chats: int = 5) -> dict:
    """Latencies (seconds) per endpoint and the errors of one load round."""
    count = [("/count_params", ("gpt2-config", "lm_head", 1 + i % 4, 2048, 0, 8, HIDDEN))
             for i in range(requests)]  # fmt: skip
    chat = [("/chat", ("Hello there!", [], "tiny-llama", "", 16, 0.7, 0.9))]
    plans = [count] * clients + [chat] * chats
    results = [{} for _ in plans]
    start = threading.Barrier(len(plans))
    threads = [
        threading.Thread(target=_session, args=(url, plan, out, start))
        for plan, out in zip(plans, results, strict=True)
    ]
    tic = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged: dict = {"wall_s": time.perf_counter() - tic}
    for out in results:
        for key, values in out.items():
            merged.setdefault(key, []).extend(values)
    return merged


def summary(result: dict) -> dict:
    """{endpoint: {n, p50_ms, p95_ms}}, plus errors and wall time."""
    table = {
        key: {"n": len(v), "p50_ms": 1000 * statistics.median(v),
              "p95_ms": 1000 * percentile(v, 0.95)}
        for key, v in result.items() if key.startswith("/") and v
    }  # fmt: skip
    return {**table, "errors": result.get("errors", []), "wall_s": result["wall_s"]}


def run(
    clients: int = 20, requests: int = 20, chats: int = 5, training: bool = True, tmp=None
) -> dict:
    """Serve, optionally train in the background, load, stop everything; the summary."""
    from qpa import open_run

    tmp = Path(tmp or tempfile.mkdtemp(prefix="qpa-load-"))
    root = tmp / "runs"
    proc, url = serve(root, tmp / "app.log")
    run_id = None
    try:
        run_id = start_training(url, root) if training else None
        result = summary(measure(url, clients, requests, chats))
        result["training"] = open_run(run_id, root).status()["state"] if run_id else "none"
        return result
    finally:
        if run_id:
            open_run(run_id, root).cancel()
            deadline = time.time() + 60
            while open_run(run_id, root).status()["state"] == "running" and time.time() < deadline:
                time.sleep(0.2)
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--chats", type=int, default=5)
    parser.add_argument("--no-training", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = run(args.clients, args.requests, args.chats, not args.no_training)
    print(f"{args.clients} clients x {args.requests} counts + {args.chats} chats, "
          f"background run: {result['training']}, wall {result['wall_s']:.1f} s")  # fmt: skip
    for key in ("/count_params", "/chat"):
        row = result.get(key, {"n": 0, "p50_ms": 0, "p95_ms": 0})
        print(f"{key:14} n={row['n']:4}  p50 {row['p50_ms']:7.0f} ms  p95 {row['p95_ms']:7.0f} ms")
    print(f"errors: {len(result['errors'])}", *result["errors"][:5], sep="\n  ")


if __name__ == "__main__":
    main()
