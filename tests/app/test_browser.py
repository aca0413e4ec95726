"""The search page and the embeddable widget in a real headless Chromium, against the real app on loopback.

Needs the `playwright` Python package (its driver only; no downloaded browsers) and a Chromium binary:
Debian's `chromium` package at /usr/bin/chromium, or $AUDIOSEARCH_CHROMIUM. Skips when either is missing, except
in CI (CI set), where a missing browser or driver fails the run.
Screenshots go to artifacts/ at the repository root.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from audiosearch.indexer import IndexOptions, build_index
from tests.app.live import live_server
from tests.app.test_page_api import long_file
from tests.conftest import REPO, copy_clips


def _chromium() -> str | None:
    for candidate in (
        os.environ.get("AUDIOSEARCH_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = _chromium()
NO_CHROMIUM = "no Chromium binary (apt-get install chromium, or set AUDIOSEARCH_CHROMIUM)"
if CHROMIUM is None and os.environ.get("CI"):  # CI installs it (.ci/run): a missing browser fails, never skips
    pytest.fail(NO_CHROMIUM, pytrace=False)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]
if os.environ.get("CI"):
    from playwright import sync_api
else:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)", exc_type=ImportError
    )

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "artifacts"
CLOCK = r"\d+:\d\d(\.\d)?"
WHEN = re.compile(rf"^{CLOCK}–{CLOCK} of {CLOCK}$")
TIMEOUT_MS = 15_000

HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A partner site</title><link rel="icon" href="data:,">
<style>
  body {{ font-family: Georgia, serif; background: #fdf8ec; color: #3b2f1e; max-width: 40rem; margin: 2rem auto; }}
  input, button, li {{ border: 5px dashed red !important; font-size: 30px; }}  /* must not reach the widget */
</style></head>
<body>
  <h1>Field recordings blog</h1>
  <p>Find a sound from our library:</p>
  <div id="sounds"></div>
  <div id="second"></div>
  <script src="{api}/widget.js" data-target="#sounds" data-k="4"></script>
</body></html>
"""


@pytest.fixture(scope="module")
def index_dir(shared_data, tmp_path_factory, lite_model) -> Path:
    root = tmp_path_factory.mktemp("browser")
    lib = root / "lib"
    clips = copy_clips(shared_data, lib, {"dog_bark": 2, "rooster": 2, "rain": 2, "helicopter": 1})
    # one longer file, so that matched windows can start after 0:00
    parts = [sf.read(p, dtype="float32", always_2d=True) for p in clips[::2]]
    rate = parts[0][1]
    mix = np.concatenate([a.mean(axis=1) for a, sr in parts if sr == rate])
    (lib / "long").mkdir()
    sf.write(lib / "long" / "mix.wav", mix, rate)
    # 40 s with a dog bark at 20-25 s between quieter rain; 10 s windows every 5 s give it several windows
    long_file(shared_data, lib / "long" / "street.wav")
    build_index(lib, root / "idx", lite_model, IndexOptions(workers=0, progress=False, window_s=10.0, hop_s=5.0))
    return root / "idx"


@pytest.fixture(scope="module")
def servers(index_dir, lite_model) -> Iterator[dict[str, str]]:
    """The API, and a second origin (another port) serving a page that embeds the widget; CORS allows only it."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    urls: dict[str, str] = {}

    def host_page(request):
        return HTMLResponse(HOST_PAGE.format(api=urls["api"]))

    with live_server(Starlette(routes=[Route("/", host_page)])) as host:
        urls["host"] = host
        app = create_app(Settings(index_dir=index_dir, cors_origins=[host]), model=lite_model)
        with live_server(app) as api:
            urls["api"] = api
            yield urls


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser):
    """A fresh page that records console errors and uncaught exceptions; the test must leave none."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.problems = []
    pg.on("console", lambda m: pg.problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.problems.append(f"uncaught: {e}"))
    yield pg
    context.close()


def scores(rows) -> list[float]:
    return [float(s) for s in rows.evaluate_all("els => els.map(e => e.dataset.score)")]


def assert_audio_served(src: str, api: str) -> None:
    """The <audio> src (fragment removed) is on the API and streams audio, whole and by range."""
    url = src.split("#", 1)[0]
    assert url.startswith(f"{api}/clips/"), src
    with httpx.Client(timeout=30) as c:
        whole = c.get(url)
        part = c.get(url, headers={"Range": "bytes=0-1023"})
    assert whole.status_code == 200 and whole.headers["content-type"].startswith("audio/"), whole.headers
    assert part.status_code == 206 and part.headers["content-type"].startswith("audio/"), part.headers
    assert len(part.content) == 1024 and whole.content[:1024] == part.content


def test_search_page_ranks_results_and_plays_the_matched_window(servers, page) -> None:
    api = servers["api"]
    page.goto(f"{api}/")
    assert page.title() == "audiosearch"
    assert page.evaluate("document.activeElement.id") == "q"  # autofocus: typing goes straight to the box
    page.keyboard.type("a dog barking")
    page.keyboard.press("Enter")
    # "Searching for “a dog barking”…" contains the query too: wait for the finished state
    finished = re.compile(r"^Showing 1–\d+ of \d+ sounds for “a dog barking”")
    sync_api.expect(page.locator("#status")).to_contain_text(finished)
    rows = page.locator("#results .result")
    n = rows.count()
    assert n >= 1
    got = scores(rows)
    assert got == sorted(got, reverse=True)
    assert "q=a+dog+barking" in page.url  # the search is in the address, so it can be shared
    paths = rows.locator(".name").evaluate_all("els => els.map(e => e.title)")
    assert len(set(paths)) == n and all(
        re.fullmatch(r"(dog_bark|rooster|rain|helicopter|long)/[\w.-]+", p) for p in paths
    ), paths
    for text in rows.locator(".when").all_inner_texts():
        assert WHEN.match(text), text
    audio = rows.first.locator("audio")
    assert audio.get_attribute("preload") == "none"  # played by the row's button, Space or the waveform
    assert_audio_served(audio.evaluate("a => a.src"), api)
    assert re.search(r"#t=[\d.]+$", audio.get_attribute("src"))

    # Keyboard: Down from the search box to the first result, then along to the latest-starting match.
    starts = [float(s) for s in rows.evaluate_all("els => els.map(e => e.dataset.start)")]
    target = int(np.argmax(starts))
    page.keyboard.press("ArrowDown")
    for _ in range(target):
        page.keyboard.press("ArrowDown")
    row = rows.nth(target)
    assert row.evaluate("el => el === document.activeElement")
    page.keyboard.press("Space")
    page.wait_for_function(
        "([a, start]) => !a.paused && a.currentTime >= start - 0.01",
        arg=[row.locator("audio").element_handle(), starts[target]],
    )
    assert "playing" in row.get_attribute("class")
    page.screenshot(path=ARTIFACTS / "search-page.png", full_page=True)
    page.keyboard.press("Enter")  # toggles: pause
    page.wait_for_function("a => a.paused", arg=row.locator("audio").element_handle())
    assert page.problems == []


def test_search_page_pagination_empty_state_and_errors(servers, page) -> None:
    page.goto(f"{servers['api']}/?k=2")
    page.fill("#q", "rain falling")
    page.press("#q", "Enter")
    rows = page.locator("#results .result")
    sync_api.expect(rows).to_have_count(2)
    sync_api.expect(page.locator("#status")).to_contain_text("Showing 1–2 of 9 sounds")
    first_two = rows.locator(".name").evaluate_all("els => els.map(e => e.title)")
    page.click("#more")
    sync_api.expect(rows).to_have_count(4)
    assert rows.nth(2).evaluate("el => el === document.activeElement")  # focus moves to the first new result
    assert rows.locator(".name").evaluate_all("els => els.map(e => e.title)")[:2] == first_two
    got = scores(rows)
    assert got == sorted(got, reverse=True) and len(set(rows.locator(".name").all_inner_texts())) == 4
    assert rows.nth(3).locator(".rank").inner_text() == "4."

    # the server's `detail` is shown, and the old results go away
    page.click("#filters summary")
    page.fill("#min_duration", "10")
    page.fill("#max_duration", "1")
    page.press("#q", "Enter")
    sync_api.expect(page.locator("#error")).to_contain_text("min_duration must not exceed")
    sync_api.expect(rows).to_have_count(0)
    assert page.locator("#more").is_hidden()

    # empty state
    page.fill("#min_duration", "")
    page.fill("#max_duration", "")
    page.fill("#path_prefix", "no-such-folder/")
    page.press("#q", "Enter")
    sync_api.expect(page.locator("#status")).to_contain_text("No sounds match “rain falling”")
    assert page.locator("#error").is_hidden() and rows.count() == 0

    # a shared link runs its search, filters included
    page.goto(f"{servers['api']}/?q=a+rooster&path_prefix=rooster/")
    sync_api.expect(page.locator("#status")).to_contain_text("of 2 sounds for “a rooster”")
    assert all(t.startswith("rooster/") for t in rows.locator(".name").evaluate_all("els => els.map(e => e.title)"))
    assert [p for p in page.problems if "422" not in p] == []  # the 422 above is logged by Chromium, nothing else


def test_widget_on_another_origin(servers, page) -> None:
    api, host = servers["api"], servers["host"]
    assert host != api
    page.goto(f"{host}/")
    widget = page.locator("#sounds")
    box = widget.locator("input[type=search]")  # Playwright's CSS selectors pierce the open shadow root
    box.fill("rain")
    box.press("Enter")
    rows = widget.locator("li")
    sync_api.expect(rows.first).to_be_visible()
    assert 1 <= rows.count() <= 4  # data-k
    got = scores(rows)
    assert got == sorted(got, reverse=True)
    sync_api.expect(widget.locator(".status")).to_contain_text("sounds")
    assert_audio_served(rows.first.locator("audio").evaluate("a => a.src"), api)
    # each result: its relevance in a word, its waveform (peaks from the API, across origins) with the match marked
    assert set(rows.locator(".score").all_inner_texts()) <= {"strong", "close", "weak"}
    sync_api.expect(rows.first.locator("[data-role=waveform] canvas")).to_have_count(1)
    match = rows.first.locator("[data-role=match]")
    assert 0 <= pct(match.evaluate("e => e.style.left")) < 100 and 0 < pct(match.evaluate("e => e.style.width")) <= 100
    # the host page's styles do not reach into the widget
    assert box.evaluate("e => getComputedStyle(e).borderTopStyle") != "dashed"
    assert page.evaluate("document.querySelector('#sounds').shadowRoot !== null")

    # the programmatic API, with an explicit server
    page.evaluate("([api]) => AudioSearchWidget.mount('#second', {server: api, k: 2, query: 'a helicopter'})", [api])
    second = page.locator("#second li")
    sync_api.expect(second).to_have_count(2)
    page.screenshot(path=ARTIFACTS / "widget.png", full_page=True)
    assert page.problems == []


def test_widget_on_an_origin_the_server_does_not_allow(servers, page) -> None:
    # same host page, but as http://localhost:PORT: a different origin, not in the CORS list
    page.goto(servers["host"].replace("127.0.0.1", "localhost") + "/")
    box = page.locator("#sounds input[type=search]")
    box.fill("rain")
    box.press("Enter")
    sync_api.expect(page.locator("#sounds .error")).to_contain_text("Could not reach the audiosearch server")
    assert page.locator("#sounds li").count() == 0
    assert any("CORS" in p for p in page.problems), page.problems


def test_search_page_says_no_close_match_and_offers_the_nearest(servers, page) -> None:
    page.goto(f"{servers['api']}/")
    page.fill("#q", "a door knocking")
    page.press("#q", "Enter")
    status = page.locator("#status")
    sync_api.expect(status).to_contain_text(
        "No close match for “a door knocking”: nothing scored above the close-match threshold."
    )
    rows = page.locator("#results .result")
    assert rows.count() >= 1 and page.locator("#results").is_hidden()  # no confident-looking cards
    sync_api.expect(page.locator("#weak")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "no-close-match.png", full_page=True)
    page.click("#weak")
    sync_api.expect(rows.first).to_be_visible()
    assert rows.first.evaluate("el => el === document.activeElement")
    assert "weak" in page.locator("#results").get_attribute("class")
    sync_api.expect(status).to_contain_text("The nearest")
    assert page.locator("#weak").is_hidden()

    # a query that matches: cards at once, with what matched (the words of the file's folder)
    page.fill("#q", "a dog barking")
    page.press("#q", "Enter")
    sync_api.expect(status).to_contain_text(re.compile(r"^Showing 1–\d+ of \d+ sounds for “a dog barking”"))
    assert page.locator("#results").is_visible() and page.locator("#weak").is_hidden()
    first = rows.first
    assert first.locator(".name").get_attribute("title").startswith("dog_bark/")
    assert first.locator(".why mark").all_inner_texts() == ["dog", "bark"]
    assert page.problems == []


def test_search_page_mode_selector(servers, page) -> None:
    page.goto(f"{servers['api']}/?q=a+dog+barking&mode=audio")
    sync_api.expect(page.locator("#status")).to_contain_text("sounds for “a dog barking”")
    assert page.locator("#mode").input_value() == "audio" and page.locator("#filters").get_attribute("open") is not None
    audio_scores = scores(page.locator("#results .result"))
    page.select_option("#mode", "hybrid")  # searches again; hybrid, the default, is left out of the URL
    page.wait_for_function("() => !location.search.includes('mode=')")
    sync_api.expect(page.locator("#status")).to_contain_text("sounds for “a dog barking”")
    hybrid_scores = scores(page.locator("#results .result"))
    assert max(hybrid_scores) > max(audio_scores)  # the files named for dogs gain their words' evidence
    page.select_option("#mode", "text")
    page.wait_for_function("() => location.search.includes('mode=text')")
    sync_api.expect(page.locator("#status")).to_contain_text("sounds for “a dog barking”")
    rows = page.locator("#results .result")
    assert rows.first.locator(".name").get_attribute("title").startswith("dog_bark/")
    assert scores(rows) == sorted(scores(rows), reverse=True) and max(scores(rows)) < max(hybrid_scores)
    assert page.problems == []


def test_widget_no_close_match_and_mode(servers, page) -> None:
    page.goto(f"{servers['host']}/")
    widget = page.locator("#sounds")
    box = widget.locator("input[type=search]")
    box.fill("a door knocking")
    box.press("Enter")
    sync_api.expect(widget.locator(".status")).to_contain_text(
        "No close match for “a door knocking”: nothing scored above the close-match threshold."
    )
    assert widget.locator("ol").is_hidden()
    widget.locator("button.nearest").click()
    sync_api.expect(widget.locator("li").first).to_be_visible()
    page.evaluate(
        "([api]) => AudioSearchWidget.mount('#second', {server: api, k: 3, mode: 'text', query: 'rain'})",
        [servers["api"]],
    )
    second = page.locator("#second li")
    sync_api.expect(second).to_have_count(3)
    assert [li.locator(".why mark").all_inner_texts() for li in second.all()[:2]] == [["rain"], ["rain"]]
    assert page.problems == []


def block_non_local(page, api: str) -> list[str]:
    """Abort every request that does not go to the API's own origin; returns the URLs aborted."""
    blocked: list[str] = []

    def route(r) -> None:
        if r.request.url.startswith((f"{api}/", "data:", "blob:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return blocked


def test_swagger_ui_renders_with_the_network_blocked(servers, page) -> None:
    api = servers["api"]
    blocked = block_non_local(page, api)
    page.goto(f"{api}/docs")
    assert page.title() == "audiosearch - Swagger UI"
    sync_api.expect(page.locator(".swagger-ui .info .title")).to_contain_text("audiosearch")
    paths = page.locator(".opblock-summary-path")
    sync_api.expect(paths.first).to_be_visible()
    listed = set(paths.evaluate_all("els => els.map(e => e.dataset.path || e.textContent.trim())"))
    assert {"/search", "/search/batch", "/search/by-audio", "/clips/{clip_id}"} <= listed, listed
    # the stylesheet applied: Swagger UI's own layout, not the browser's unstyled defaults
    assert page.locator(".swagger-ui .opblock-tag").first.evaluate("e => getComputedStyle(e).display") == "flex"
    assert blocked == [] and page.problems == []


def test_redoc_renders_with_the_network_blocked(servers, page) -> None:
    api = servers["api"]
    blocked = block_non_local(page, api)
    page.goto(f"{api}/redoc")
    sync_api.expect(page.locator("h1").first).to_contain_text("audiosearch")
    sync_api.expect(page.get_by_text("/search/by-audio").first).to_be_attached()
    sync_api.expect(page.locator("a[href='#tag/search']").first).to_be_visible()
    # ReDoc's bundle asks for one thing of its own: the "API docs by Redocly" logo, which hides itself when the
    # request fails (its onError). Everything the page needs comes from the API.
    page.wait_for_load_state("networkidle")
    assert set(blocked) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}, blocked
    assert page.locator("img[alt='redocly logo']").count() == 0
    assert [p for p in page.problems if "Failed to load resource" not in p] == []


def pct(style: str) -> float:
    m = re.fullmatch(r"\s*([\d.]+)%\s*", style)
    assert m, style
    return float(m.group(1))


def test_waveform_marks_the_match_in_a_long_file(servers, page) -> None:
    page.goto(f"{servers['api']}/?q=a+dog+barking&mode=audio&k=20")
    sync_api.expect(page.locator("#status")).to_contain_text("sounds for “a dog barking”")
    row = page.locator("#results .result").filter(has=page.locator(".name[title='long/street.wav']"))
    sync_api.expect(row).to_have_count(1)
    start, end = float(row.get_attribute("data-start")), float(row.get_attribute("data-end"))
    assert 10.0 <= start <= 20.0  # a window that holds the bark (20-25 s), not the rain before it
    wave = row.locator("[data-role=waveform]")
    sync_api.expect(wave.locator("svg path[d]")).to_have_count(1)  # the peaks arrived and were drawn
    match = wave.locator("[data-role=match]")
    hit = page.evaluate(
        "async () => (await (await fetch('search?q=a+dog+barking&mode=audio&k=20')).json())"
        ".results.find(h => h.path === 'long/street.wav')"
    )
    duration = hit["duration"]
    assert duration == pytest.approx(40.0, abs=0.1) and (hit["start"], hit["end"]) == (start, end)
    left, width = pct(match.evaluate("e => e.style.left")), pct(match.evaluate("e => e.style.width"))
    assert left == pytest.approx(100 * start / duration, abs=0.01)
    assert width == pytest.approx(100 * (end - start) / duration, abs=0.01)
    # drawn where the style says: the box's position inside the waveform's box
    wb, mb = wave.bounding_box(), match.bounding_box()
    assert (mb["x"] - wb["x"]) / wb["width"] == pytest.approx(start / duration, abs=0.01)
    assert mb["width"] / wb["width"] == pytest.approx((end - start) / duration, abs=0.01)
    # one strip segment per window (40 s, 10 s windows every 5 s), the brightest at the match
    segs = wave.locator(".strip span")
    assert segs.count() == len(hit["windows"]) > 3
    opacity = [float(o) for o in segs.evaluate_all("els => els.map(e => e.style.opacity)")]
    best = int(np.argmax(opacity))
    assert hit["windows"][best]["start"] == start and opacity[0] < 0.5 and opacity[-1] < 0.5
    # a click on the waveform plays from there (three quarters in: 30 s)
    wave.click(position={"x": wb["width"] * 0.75, "y": wb["height"] / 2})
    audio = row.locator("audio").element_handle()
    page.wait_for_function("a => !a.paused && a.currentTime >= 29.5", arg=audio)
    assert "playing" in row.get_attribute("class")
    sync_api.expect(row.locator("[data-role=play]")).to_have_attribute("aria-label", "Pause long/street.wav")
    page.keyboard.press("Escape")
    row.locator("[data-role=play]").click()  # pauses
    page.wait_for_function("a => a.paused", arg=audio)
    assert page.problems == []


def test_search_by_example_upload(servers, page, index_dir) -> None:
    page.goto(f"{servers['api']}/")
    picker = page.get_by_label("Or search by example")
    assert picker.get_attribute("type") == "file"
    lib = Path(read_manifest_library(index_dir))
    bark = sorted((lib / "dog_bark").glob("*.ogg"))[0]
    picker.set_input_files(bark)
    status = page.locator("#status")
    sync_api.expect(status).to_contain_text(
        re.compile(rf"^Showing 1–\d+ of \d+ sounds like {re.escape(bark.name)} \(all 5 s\)")
    )
    rows = page.locator("#results .result")
    assert rows.first.locator(".name").get_attribute("title") == f"dog_bark/{bark.name}"  # itself, first
    rel = [float(r) for r in rows.evaluate_all("els => els.map(e => e.dataset.relevance)")]
    assert rel == sorted(rel, reverse=True) and all(0 <= r <= 1 for r in rel)
    # a longer upload: the status says how much of it was used (the server's 30 s limit)
    picker.set_input_files(lib / "long" / "street.wav")
    sync_api.expect(status).to_contain_text("sounds like street.wav (first 30 s)")
    assert "q=" not in page.url
    # dropped on the page: the same search (a file made in the page from a clip's audio, renamed)
    page.evaluate(
        """async () => {
            const blob = await (await fetch("clips/1/audio")).blob();
            const dt = new DataTransfer();
            dt.items.add(new File([blob], "door.ogg", { type: blob.type }));
            document.body.dispatchEvent(new DragEvent("dragenter", { dataTransfer: dt, bubbles: true }));
            document.body.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
        }"""
    )
    sync_api.expect(status).to_contain_text("sounds like door.ogg (all 5 s)")
    assert "dragging" not in (page.locator("body").get_attribute("class") or "")
    assert page.problems == []


def read_manifest_library(index_dir: Path) -> str:
    from audiosearch.indexer.snapshots import current_snapshot, read_manifest

    return read_manifest(current_snapshot(index_dir))["library"]


def test_keyboard_only_and_every_control_named(servers, page) -> None:
    page.goto(f"{servers['api']}/")
    page.keyboard.press("Shift+Tab")  # from the autofocused box back to the page's first stop
    assert page.evaluate("document.activeElement.textContent") == "Skip to results"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("a rooster crowing")
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("#status")).to_contain_text(re.compile(r"^Showing 1–\d+ of \d+ sounds"))
    for _ in range(12):  # on to the first result's play button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.role") == "play":
            break
    focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused.startswith("Play ") and focused.endswith(" from the match"), focused
    row = page.locator("#results .result").first
    assert row.locator("[data-role=play]").evaluate("e => e === document.activeElement")
    page.keyboard.press("Space")
    start, end = float(row.get_attribute("data-start")), float(row.get_attribute("data-end"))
    page.wait_for_function(
        "([a, s]) => !a.paused && a.currentTime >= s - 0.01", arg=[row.locator("audio").element_handle(), start]
    )
    # the matched part only: it stops at the window's end (the clip is longer than the window, or ends there)
    page.wait_for_function("a => a.paused", arg=row.locator("audio").element_handle(), timeout=(end - start + 5) * 1000)
    assert row.locator("audio").evaluate("a => a.currentTime") <= end + 0.3

    # every control has an accessible name (computed by Chromium's accessibility tree, through role queries)
    page.locator("#filters summary").click()
    for role in ("button", "searchbox", "textbox", "spinbutton", "combobox"):
        all_of_role = page.get_by_role(role)
        named = page.get_by_role(role, name=re.compile(r"\w"))
        assert all_of_role.count() == named.count(), role
    assert page.get_by_role("button").count() >= 1 + 2 * row.count()
    assert page.get_by_role("searchbox", name="Describe a sound").count() == 1
    assert page.get_by_role("combobox", name="Match on").count() == 1
    assert page.get_by_label("Or search by example").count() == 1
    plays = page.locator("[data-role=play]")
    names = plays.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
    assert len(names) == page.locator("#results .result").count() and all(
        n and "Play" in n or "Pause" in n for n in names
    )
    waves = page.locator("[data-role=waveform]").evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
    assert all(w and w.startswith("Waveform of ") for w in waves)
    assert page.problems == []


def test_screenshots_for_the_docs(servers, page, tmp_path) -> None:
    """Screenshots: the search page with results (light and dark), and the widget on another site. They go to tmp_path;
    AUDIOSEARCH_SCREENSHOTS=docs/img copies them there (how the documentation's images are made)."""
    api = servers["api"]
    page.set_viewport_size({"width": 1000, "height": 760})
    page.goto(f"{api}/?q=a+dog+barking")
    sync_api.expect(page.locator("#status")).to_contain_text(re.compile(r"^Showing 1–\d+ of \d+ sounds"))
    assert page.locator("#results .result").count() >= 3
    assert page.locator("#results .result").first.locator(".name").get_attribute("title").startswith("dog_bark/")
    sync_api.expect(page.locator("#results .result").first.locator("svg path[d]")).to_have_count(1)
    page.screenshot(path=tmp_path / "search-page.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=tmp_path / "search-page-dark.png")
    page.emulate_media(color_scheme="light")

    page.goto(f"{servers['host']}/")
    box = page.locator("#sounds input[type=search]")
    box.fill("rain")
    box.press("Enter")
    sync_api.expect(page.locator("#sounds li").first).to_be_visible()
    page.evaluate("([api]) => AudioSearchWidget.mount('#second', {server: api, k: 2, query: 'a helicopter'})", [api])
    sync_api.expect(page.locator("#second li")).to_have_count(2)
    page.screenshot(path=tmp_path / "widget.png", full_page=True)
    assert page.problems == []

    for name in ("search-page.png", "search-page-dark.png", "widget.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width == 1000 and height >= 600, (name, width, height)
    if out := os.environ.get("AUDIOSEARCH_SCREENSHOTS"):
        dest = Path(out) if Path(out).is_absolute() else REPO / out
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("search-page.png", "search-page-dark.png", "widget.png"):
            shutil.copyfile(tmp_path / name, dest / name)


def test_more_like_this_on_the_page_and_in_the_widget(servers, page) -> None:
    api = servers["api"]
    page.goto(f"{api}/?q=a+rooster+crowing")
    rows = page.locator("#results .result")
    sync_api.expect(page.locator("#status")).to_contain_text(re.compile(r"^Showing 1–\d+ of \d+ sounds for"))
    first = rows.first.locator(".name").get_attribute("title")
    button = rows.first.locator("[data-role=similar]")
    assert button.get_attribute("aria-label").startswith(f"More like {first}")
    button.click()
    name = first.rsplit("/", 1)[-1]
    sync_api.expect(page.locator("#status")).to_contain_text(
        re.compile(rf"^Showing 1–\d+ of 9 sounds like “{re.escape(name)}”")
    )
    assert rows.first.locator(".name").get_attribute("title") == first  # the clip itself first
    assert rows.first.evaluate("el => el === document.activeElement")
    assert float(rows.first.get_attribute("data-score")) == pytest.approx(1.0, abs=1e-4)  # one window: itself
    listed = rows.locator(".name").evaluate_all("els => els.map(e => e.title)")
    with httpx.Client(base_url=api, timeout=30) as c:
        clip_id = int(page.evaluate("new URLSearchParams(location.search).get('like')"))
        want = [h["path"] for h in c.get(f"/clips/{clip_id}/similar", params={"k": 10}).json()["results"]]
    assert listed == want and len(set(listed)) == len(listed)
    page.screenshot(path=ARTIFACTS / "more-like-this.png", full_page=True)

    # the widget, on another origin: its first result's button lists that clip's similar files
    page.goto(f"{servers['host']}/")
    widget = page.locator("#sounds")
    box = widget.locator("input[type=search]")
    box.fill("rain")
    box.press("Enter")
    items = widget.locator("li")
    sync_api.expect(items.first).to_be_visible()
    first = items.first.locator(".name").get_attribute("title")
    items.first.locator("[data-role=similar]").click()
    name = first.rsplit("/", 1)[-1]
    sync_api.expect(widget.locator(".status")).to_contain_text(f"Showing 4 of 9 sounds like “{name}”")
    assert items.first.locator(".name").get_attribute("title") == first
    widget.get_by_role("button", name="More results").click()  # paging goes on with the similar files
    sync_api.expect(items).to_have_count(8)
    paths = items.locator(".name").evaluate_all("els => els.map(e => e.title)")
    assert len(set(paths)) == 8
    assert page.problems == []
