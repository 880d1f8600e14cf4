"""A real browser (Debian's chromium driven by Playwright) against the app launched in-process:
the parameter table follows the presets, the rank and the advanced options, a tiny run trains
and draws its curve, the Results tab charts it and computes gradient variances, the chat
replies. It also saves the Design tab as assets/screenshot.png."""

import os
import re
from pathlib import Path

import pytest
from conftest import served_studio

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parent.parent / "assets" / "screenshot.png"

QUIET = [  # gradio's own pandas calls warn on pandas 3; not ours to fix
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated.*"),
]
pytestmark = [
    *QUIET,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed"),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with served_studio(tmp_path_factory.mktemp("runs")) as address:
        yield address


@pytest.fixture(scope="module")
def page(url):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        sync_api.expect.set_options(timeout=20_000)  # a busy shared CPU draws plots slowly
        page.goto(url)
        yield page
        browser.close()


def pick(page, elem_id: str, option: str) -> None:
    """Choose `option` in the gradio dropdown with this elem_id."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(option)
    page.locator("ul[role=listbox] li", has_text=option).first.click()


def test_design_tab_follows_the_rank_and_looks_right(page):
    from playwright.sync_api import expect

    table = page.locator("#param-table")
    expect(table).to_contain_text("106,152")  # smollm2, r=4, the default (best measured) shape
    expect(page.locator("#tradeoff .js-plotly-plot")).to_be_visible()
    page.wait_for_timeout(800)  # let the plots finish their first draw
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)  # 1400 × about 1100
    preset = page.locator("#design-preset input")
    expect(preset).to_have_value(re.compile(r"^qpa-shallow-gelu \(best measured\): "))
    pick(page, "design-preset", "qpa: ")  # the paper's shape, one preset away
    expect(table).to_contain_text("106,264")
    paper = "--hidden-sizes 32,64,128,128,64,32,32 --activation none --fourier-features 0"
    expect(page.locator("#count-command")).to_contain_text(paper)
    rank = page.get_by_label("number input for LoRA rank r")
    rank.fill("8")
    rank.press("Enter")
    expect(table).to_contain_text("397,824")  # LoRA at r=8: 8 · (49152 + 576)
    page.get_by_label("number input for LoRA rank r").fill("2")
    page.get_by_label("number input for LoRA rank r").press("Enter")
    page.get_by_text("Advanced QPA").click()
    pick(page, "design-activation", "gelu")
    expect(page.locator(".qpa-stats")).to_contain_text("≤ 33")  # GELU: last width 32 + bias
    expect(page.locator("#count-command")).to_contain_text(
        "--rank 2 --n-qubits 6 --hidden-sizes 32,64,128,128,64,32,32 --fourier-features 0"
    )  # gelu is the default activation: no flag
    expect(preset).to_have_value(re.compile("^qpa-gelu: "))  # the edit made another preset
    pick(page, "design-activation", "none")
    expect(page.locator(".qpa-stats")).to_contain_text("≤ 8")  # affine: 6 bits + p, + bias
    expect(preset).to_have_value(re.compile("^qpa: "))  # the paper's shape again
    pick(page, "design-model", "tiny-llama")
    expect(table).to_contain_text("582")  # tiny-llama lm_head, r=2: 2 · (259 + 32)
    norm = page.get_by_label("differentiated")
    expect(norm).to_be_disabled()  # DoRA's norm means something only with DoRA on
    page.get_by_label("DoRA", exact=True).check()
    expect(norm).to_be_enabled()
    norm.check()
    expect(page.locator("#count-command")).to_contain_text("--use-dora --dora-norm differentiated")
    page.get_by_label("constant").check()  # back to plain LoRA for the run that follows
    page.get_by_label("DoRA", exact=True).uncheck()
    expect(page.locator("#count-command")).not_to_contain_text("dora")


@pytest.mark.chatterbot
def test_the_default_launch_shows_epochs_the_base_line_and_the_best_step(page, url):
    """A new user's launch: every Train field as it comes, on a tiny model (all topics, QPA and
    its LoRA baseline); watched until the first evaluations are drawn, then stopped."""
    from playwright.sync_api import expect

    page.goto(url)  # a fresh page: every field at its default
    pick(page, "design-model", "tiny-llama")
    page.get_by_role("tab", name="② Train").click()
    plan = page.locator("#plan")
    expect(plan).to_contain_text("1,823 train / 202 validation examples")
    expect(plan).to_contain_text("300 steps × batch 8 = 1.32 epochs")
    expect(plan).not_to_contain_text("⚠️")
    page.locator("#launch").click()
    progress = page.locator("#progress")
    expect(progress).to_contain_text("best step", timeout=240_000)  # after the first evaluation
    expect(progress).to_contain_text("epoch ")
    expect(progress).to_contain_text("of 1.32")
    expect(progress).to_contain_text("base model ")
    curves = page.locator("#curves .js-plotly-plot")
    expect(curves.locator(".xtitle").first).to_contain_text("1.32 epochs in all")
    expect(curves.locator(".legendtext", has_text="base model")).to_be_visible()
    names = curves.evaluate("plot => plot.data.map(trace => trace.name)")
    assert any("-qpa-lora-" in n and n.endswith(" best step") for n in names), names  # the star
    page.locator("#cancel").click()  # the point is made; the rest of the module needs the CPU
    finished = re.compile(r"\b(done|failed|cancelled)\b")
    for badge in progress.locator(".qpa-badge").all():
        expect(badge).to_have_text(finished, timeout=120_000)


@pytest.mark.chatterbot
def test_a_tiny_run_trains_and_draws_its_curve(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="② Train").click()
    page.get_by_label("QPA only").check()
    for label, value in (
        ("Steps", "3"),
        ("Batch size", "4"),
        ("Max length", "64"),
        ("Max examples", "40"),
    ):
        page.get_by_label(label, exact=True).fill(value)
    page.locator("#launch").click()
    progress = page.locator("#progress")
    expect(progress.locator(".qpa-run")).to_have_count(1)  # watching this launch, not the last
    finished = re.compile(r"\b(done|failed|cancelled)\b")
    expect(progress.locator(".qpa-badge").first).to_have_text(finished, timeout=120_000)
    assert progress.locator(".qpa-badge").first.inner_text() == "done", progress.inner_text()
    expect(progress).to_contain_text("step 3/3")
    expect(page.locator("#curves .js-plotly-plot .scatterlayer .trace").first).to_be_attached()
    expect(page.locator("#cli")).to_contain_text("-m qpa train --config")


@pytest.mark.chatterbot
def test_results_tab_charts_the_run_and_computes_variances(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="④ Results").click()  # opening it refreshes it
    expect(page.locator("#results-table")).to_contain_text("qpa-lora")
    points = page.locator("#results-params .js-plotly-plot .scatterlayer .trace")
    expect(points.first).to_be_attached()
    page.locator("#variance-qubits textarea").fill("2,4")
    page.locator("#variance-depths textarea").fill("2")
    page.locator("#variance-compute").click()
    expect(page.locator("#variance-note")).to_contain_text("2 points in", timeout=60_000)
    expect(page.locator("#variance .js-plotly-plot .scatterlayer .trace").first).to_be_attached()


def test_chat_replies(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="⑤ Chat").click()
    pick(page, "chat-model", "tiny-llama")
    page.locator("#chat-input textarea").fill("Hello, model!")
    page.locator("#chat-send").click()
    expect(page.locator("#chatbot [data-testid='user']").last).to_have_text("Hello, model!")
    reply = page.locator("#chatbot [data-testid='bot']").last
    expect(reply).to_have_text(
        re.compile(r"[^…\s]"), timeout=60_000
    )  # streamed, not the placeholder
