"""The Train tab on ZeroGPU in a real browser: before Start the estimate line gives the launch's
GPU seconds and calls; Start trains QPA and its baseline inside its own request, one GPU call
per chunk (a notice after each), and both cards end done. ZeroGPU is the fake `spaces` of
tests/test_zerogpu.py, run in this process as the real package does off ZeroGPU."""

import os
import re
import sys

import pytest
from conftest import served_studio
from test_browser import CHROMIUM, FLAGS, QUIET
from test_zerogpu import FakeSpaces

from qpa.training.estimate import record

pytestmark = [
    *QUIET,
    pytest.mark.chatterbot,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed"),
]
FORM = ("?model=tiny-llama&rank=2&chunk_size=128&depth=2&hidden_sizes=16,16&tab=train&steps=6"
        "&eval_every=2&batch_size=4&max_length=64&max_examples=40&topics=ai")  # fmt: skip


def test_start_on_zerogpu_shows_the_estimate_and_trains_in_gpu_calls(tmp_path, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    from app.state import Studio

    monkeypatch.setenv("QPA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    fake = FakeSpaces()
    monkeypatch.setitem(sys.modules, "spaces", fake)
    record("tiny-llama", {"step_s_per_example": {"qpa-lora": 5.0, "lora": 5.0}})  # 2 steps a call
    studio = Studio.create(runs_root=tmp_path / "runs", demo=False, env={"SPACES_ZERO_GPU": "1"})
    with served_studio(studio.root, studio=studio) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        expect.set_options(timeout=60_000)  # 2 shared cores: the estimate may take seconds
        page.goto(url + FORM)
        estimate = page.locator("#estimate")
        expect(estimate).to_contain_text("ZeroGPU estimate: about")
        expect(estimate).to_contain_text("in 6 GPU call(s)")  # 3 for QPA, 3 for its baseline
        expect(estimate).to_contain_text("daily ZeroGPU quota")
        expect(page.get_by_text("On this ZeroGPU Space, Start trains the runs")).to_be_visible()
        page.locator("#launch").click()
        expect(page.get_by_text(re.compile(r"GPU call \d of 3 done")).first).to_be_visible()
        badges = page.locator("#progress .qpa-run .qpa-badge")
        expect(badges).to_have_count(2)
        expect(badges.nth(0)).to_have_text("done", timeout=120_000)
        expect(badges.nth(1)).to_have_text("done", timeout=120_000)
        browser.close()
    assert len(fake.durations) == 6
    assert not list((studio.root / ".jobs").glob("*.log"))  # no background process
