"""A real browser (Debian's chromium driven by Playwright) against the app launched in-process:
the parameter table follows the presets, the rank and the advanced options, a tiny run trains
and draws its curve, the Results tab charts it and computes gradient variances, the chat
replies. Then the teaching side: a lesson link opens its state with locked controls and hidden
tabs, bad parameters give one notice, Copy link and a reload keep the form, the tour opens and
closes, and the layout fixes hold. It saves the Design tab as assets/screenshot.png, a lesson
link as assets/lesson-link.png and the tour as assets/tour.png."""

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
ASSETS = Path(__file__).resolve().parent.parent / "assets"
SCREENSHOT = ASSETS / "screenshot.png"
LESSON = "?preset=qpa&rank=2&chunk_size=4096&depth=4&lock=rank,chunk_size&hide=results,chat"

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
        sync_api.expect.set_options(timeout=30_000)  # 2 shared cores: redraws may take seconds
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
    expect(table).to_contain_text("99,456")  # LoRA at r=2; the qubits follow (6) before the next edit
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


def test_a_lesson_link_opens_its_state_with_locks_and_hidden_tabs(page, url):
    from playwright.sync_api import expect

    page.goto(url + LESSON)
    headline = page.locator("#headline")
    expect(headline).to_contain_text("174.70%")  # rank 2, chunk 4096, depth 4 on smollm2
    expect(headline.locator(".qpa-over")).to_contain_text("MORE parameters than LoRA")
    expect(page.locator("#tradeoff .legend")).to_contain_text("your choice: more than LoRA")
    for flag in ("--rank 2", "--chunk-size 4096", "--n-qubits 5", "--depth 4"):
        expect(page.locator("#count-command")).to_contain_text(flag)
    expect(page.get_by_label("number input for LoRA rank r")).to_be_disabled()  # locked
    expect(page.locator("#design-preset input")).to_be_disabled()  # pinned by preset=qpa
    expect(page.get_by_role("tab", name="④ Results")).to_be_hidden()
    expect(page.get_by_role("tab", name="⑤ Chat")).to_be_hidden()
    expect(page.get_by_role("tab", name="② Train")).to_be_visible()
    page.wait_for_timeout(800)
    page.screenshot(path=str(ASSETS / "lesson-link.png"))
    depth = page.get_by_label("number input for Depth L")
    depth.fill("6")
    depth.press("Enter")
    expect(page.locator("#count-command")).to_contain_text("--depth 6")
    expect(page).to_have_url(re.compile(r"rank=2&chunk_size=4096&n_qubits=5&depth=6.*lock=rank"))
    page.reload()  # the form, the counts and the lesson survive a reload
    expect(page.locator("#count-command")).to_contain_text("--depth 6")
    expect(page.get_by_label("number input for LoRA rank r")).to_be_disabled()


def test_bad_link_parameters_give_one_notice(page, url):
    from playwright.sync_api import expect

    page.goto(url + "?rank=abc&bogus=1&depth=3")
    toast = page.locator(".toast-body", has_text="could not use")
    expect(toast).to_have_count(1)
    expect(toast).to_contain_text("`rank` = 'abc' is not a number")
    expect(toast).to_contain_text("`bogus`")
    expect(page.locator("#count-command")).to_contain_text("--depth 3")  # the rest applies


def test_copy_link_reproduces_the_form_and_the_tab(page, url):
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#param-table")).to_contain_text("LoRA baseline")
    rank = page.get_by_label("number input for LoRA rank r")
    rank.fill("8")
    rank.press("Enter")
    expect(page.locator("#param-table")).to_contain_text("397,824")  # LoRA at r=8
    page.get_by_role("tab", name="② Train").click()
    page.get_by_label("Steps", exact=True).fill("42")
    page.get_by_text("Share this page, or make a lesson link").click()
    page.locator("#lock").get_by_label("steps").check()
    page.locator("#copy-link").click()
    link = page.locator("#share-link textarea")
    expect(link).to_have_value(re.compile(r"^http.*rank=8.*steps=42.*tab=train.*lock=steps$"))
    page.goto(link.input_value())
    expect(page.get_by_label("Steps", exact=True)).to_have_value("42")
    expect(page.get_by_label("Steps", exact=True)).to_be_disabled()
    page.get_by_role("tab", name="① Design").click()
    expect(page.locator("#param-table")).to_contain_text("397,824")


def test_kept_defaults_start_a_page_opened_without_a_link(page, url):
    from playwright.sync_api import expect

    page.goto(url + "?depth=5")
    expect(page.locator("#count-command")).to_contain_text("--depth 5")
    page.get_by_text("Share this page, or make a lesson link").click()
    page.locator("#save-defaults").click()
    expect(page.locator(".toast-body", has_text="Kept:")).to_be_visible()  # stored
    page.goto(url)  # no link: the browser's kept settings
    expect(page.locator("#count-command")).to_contain_text("--depth 5")
    page.get_by_text("Share this page, or make a lesson link").click()
    page.get_by_role("button", name="Forget my defaults").click()
    page.wait_for_timeout(500)
    page.goto(url + "?rank=3")  # a link wins over kept settings
    expect(page.locator("#count-command")).to_contain_text("--rank 3")
    expect(page.locator("#count-command")).not_to_contain_text("--depth")
    page.goto(url)
    page.wait_for_timeout(1500)  # the page's load events have run
    expect(page.locator("#count-command")).not_to_contain_text("--depth")
    expect(page.locator("#count-command")).not_to_contain_text("--rank")


def test_the_tour_and_the_explanations_open_and_close(page, url):
    from playwright.sync_api import expect

    page.goto(url)
    tour = page.locator("#tour")
    expect(tour).to_be_hidden()
    page.locator("#tour-open").click()
    expect(tour).to_be_visible()
    expect(tour).to_contain_text("rank ceiling")
    page.wait_for_timeout(300)
    page.screenshot(path=str(ASSETS / "tour.png"))
    page.locator("#tour-close").click()
    expect(tour).to_be_hidden()
    page.locator("#explain-design").get_by_text("What am I looking at?").click()
    explained = page.locator("#explain-design")
    expect(explained).to_contain_text("rank 4")  # live numbers
    expect(explained).to_contain_text(re.compile(r"\d+ qubits.*\d+\.\d\d% of LoRA", re.S))


def test_layout_fixes_hold(page, url):
    page.goto(url)
    page.get_by_text("Advanced QPA").click()
    info = page.locator("#noise").get_by_text("How much random error")
    assert info.bounding_box()["width"] > 250  # was one word wide beside the shots box
    page.get_by_role("tab", name="⑤ Chat").click()
    page.get_by_role("tab", name="Side by side").click()
    pane = page.locator(".qpa-pane").first
    label = pane.locator("label, [data-testid='block-label']").first.bounding_box()
    log = pane.locator(".bubble-wrap").first
    top = log.bounding_box()["y"] + float(log.evaluate("e => getComputedStyle(e).paddingTop")[:-2])
    assert label["y"] + label["height"] <= top  # the pane's label no longer covers its text
    box = page.locator("#chat-adapter input")
    assert box.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"


@pytest.mark.chatterbot
def test_each_run_card_has_its_own_stop(page, url):
    from playwright.sync_api import expect

    page.goto(url + "?model=tiny-llama&rank=2&chunk_size=128&depth=2&hidden_sizes=16,16&tab=train"
              "&steps=5000&eval_every=1000&batch_size=4&max_length=64&max_examples=40&topics=ai")  # fmt: skip
    expect(page.get_by_label("Steps", exact=True)).to_have_value("5000")
    page.locator("#launch").click()  # QPA and its LoRA baseline: one trains, one waits
    cards = page.locator("#progress .qpa-run")
    expect(cards).to_have_count(2)
    expect(cards.nth(1).locator(".qpa-badge")).to_have_text("queued")
    cards.nth(1).locator(".qpa-stop-one").click()  # the baseline's own Stop
    expect(cards.nth(1).locator(".qpa-badge")).to_have_text("cancelled")
    expect(cards.nth(0).locator(".qpa-badge")).to_have_text(re.compile("starting|running"))
    cards.nth(0).locator(".qpa-stop-one").click()
    expect(cards.nth(0).locator(".qpa-badge")).to_have_text("cancelled", timeout=120_000)
