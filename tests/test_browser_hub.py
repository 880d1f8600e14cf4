"""The Runs tab's Hub section in a real browser: where runs do not outlive a restart the tab
says so, and the push button answers at once, in plain words, when the Hub is unreachable."""

import dataclasses
import os

import pytest
from conftest import served_studio
from test_browser import CHROMIUM, FLAGS, QUIET, pick

from qpa.config import DataConfig, ModelConfig, QPAConfig, RunConfig, TrainConfig
from qpa.runs.store import create_run
from qpa.training.loop import train

pytestmark = [
    *QUIET,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed"),
]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from app.state import Studio

    sync_api = pytest.importorskip("playwright.sync_api")
    root = tmp_path_factory.mktemp("runs")
    corpus = root.parent / "corpus.txt"
    corpus.write_text("\n\n".join(f"Line {i} about qubits." for i in range(30)))
    config = RunConfig(model=ModelConfig("tiny-llama"), qpa=QPAConfig(chunk_size=64, depth=2),
                       data=DataConfig(corpus=str(corpus), max_length=16),
                       train=TrainConfig(steps=2, eval_every=2, batch_size=4))  # fmt: skip
    train(config, create_run(config, root, name="finished"))
    studio = Studio.create(runs_root=root, demo=False)
    studio = dataclasses.replace(
        studio, settings=dataclasses.replace(studio.settings, persistent=False)
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_TOKEN", "hf_" + "t" * 32)
        env.setenv("HF_HUB_OFFLINE", "1")  # the push path's own check, as without a network
        with served_studio(root, studio=studio) as url, sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(url)
            yield page
            browser.close()


def test_runs_tab_says_runs_are_temporary(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="③ Runs").click()
    expect(page.locator("#runs-temporary")).to_contain_text("Runs are temporary on this Space")


def test_push_button_says_the_hub_is_offline(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="③ Runs").click()
    pick(page, "open-run", "finished")
    page.locator("#push-repo textarea, #push-repo input").first.fill("me/qpa-tiny")
    page.locator("#push-run").click()
    result = page.locator("#push-result")
    expect(result).to_contain_text("cannot be reached from here (offline)", timeout=10_000)
    expect(result).to_contain_text("nothing was pushed")
    assert "t" * 32 not in page.content()  # the token never reaches the page


def test_design_tab_puts_back_a_model_it_cannot_find_offline(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="① Design").click()
    box = page.locator("#design-model input")
    box.click()
    box.fill("foo/bar")
    box.press("Enter")
    expect(page.locator("#model-status")).to_contain_text(
        "cannot be reached (offline)", timeout=10_000
    )
    expect(box).to_have_value("smollm2")  # the counts' model, so form and counts agree
