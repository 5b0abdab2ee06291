"""The web chat at `/`, driven in a real headless Chromium against a real server: it streams,
stops, resumes a conversation with its KV state restored after a restart, renames and deletes
conversations, asks for the API key, switches models, renders a model's HTML and links inert,
and never reaches past the server (every other request the browser tries is blocked and
counted)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import DRAFT, TINY, free_port
from tests.server.conftest import Server, start
from tools.page_screenshot import CHROMIUM, MODELS_LISTED, launch

ANSWER_MS = 90_000  # ms a test waits for an answer of the 270M on two cores


def _browser_or_skip() -> Any:
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("EDGEINF_REQUIRE_BROWSER"):
            raise AssertionError(f"no Chromium at {CHROMIUM}: apt-get install chromium")
        pytest.skip(
            f"no Chromium at {CHROMIUM} (apt-get install chromium, or set EDGEINF_CHROMIUM)"
        )
    from playwright.sync_api import sync_playwright

    return sync_playwright()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with _browser_or_skip() as p:
        b = launch(p)
        yield b
        b.close()


LONG_ANSWERS = (
    "Count from 1 to 400, one number per line.",
    "List two hundred animals, one per line.",
    "Write a long story about a lighthouse keeper.",
)
STREAMING_OR_DONE = """() => {
  const streaming = document.querySelector('#log article.streaming .body');
  return streaming ? streaming.innerText.length > 20 : true;
}"""


@dataclass
class Tab:
    """A page of the chat in its own browser profile, with every request it tried."""

    page: Any
    server: Server
    blocked: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def ask(self, text: str) -> Any:
        """Send a question; the answer's article, once it has finished streaming."""
        self.page.fill("#input", text)
        self.page.press("#input", "Enter")
        answer = self.page.locator("#log article.assistant").last
        answer.wait_for()
        self.page.wait_for_selector("#log article.streaming", state="detached", timeout=ANSWER_MS)
        return answer

    def setting(self, name: str, value: str) -> None:
        """Fill one of the Settings panel's fields as a user would, the panel opened first."""
        if not self.page.locator("#settings[open]").count():
            self.page.click("#settings summary")
        self.page.fill(f"#{name}", value)
        self.page.dispatch_event(f"#{name}", "change")

    def status(self) -> str:
        return str(self.page.locator("#log article.assistant .status").last.inner_text())


def open_tab(browser: Any, server: Server) -> Tab:
    context = browser.new_context()
    page = context.new_page()
    tab = Tab(page, server)
    own = urlsplit(server.url).netloc

    def route(r: Any) -> None:
        url = r.request.url
        tab.requested.append(url)
        if urlsplit(url).netloc == own:
            r.continue_()
        else:
            tab.blocked.append(url)
            r.abort()

    context.route("**/*", route)
    page.on("pageerror", lambda e: tab.errors.append(str(e)))

    def console(m: Any) -> None:
        if m.type == "error":
            tab.errors.append(m.text)

    page.on("console", console)
    page.goto(server.url + "/")
    page.wait_for_function(MODELS_LISTED)
    return tab


def closed(tab: Tab) -> None:
    """The tab reached nothing but the server and raised no script error."""
    tab.page.context.close()
    assert tab.blocked == [], tab.blocked
    assert tab.errors == [], tab.errors


def stop_a_long_answer(tab: Tab) -> int:
    """Ask for long answers until one is stopped midway with the Stop button; how many were
    asked. The 270M may end an answer early (its earlier turns differ with the decode threads it
    was given), even in the moment between seeing it stream and the click landing: such an
    answer is followed by the next request."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = tab.page
    for asked, ask in enumerate(LONG_ANSWERS):
        before = page.locator("#log article.assistant").count()
        page.fill("#input", ask)
        page.press("#input", "Enter")
        page.wait_for_function(
            f"() => document.querySelectorAll('#log article.assistant').length > {before}"
        )
        page.wait_for_function(STREAMING_OR_DONE, timeout=ANSWER_MS)
        if page.locator("#log article.streaming").count():
            with contextlib.suppress(PlaywrightTimeout):  # the answer ended first
                page.click("#stop", timeout=5000)
        page.wait_for_selector("#log article.streaming", state="detached", timeout=ANSWER_MS)
        if page.locator("#log article.assistant").last.locator(".status").inner_text() == (
            "stopped"
        ):
            return asked + 1
    raise AssertionError(f"the 270M finished each of {len(LONG_ANSWERS)} long answers first")


def sessions(server: Server, key: str | None = None) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.get(f"{server.url}/v1/sessions", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def test_the_page_and_its_files_come_with_headers_that_keep_it_to_itself(
    tiny_server: Server,
) -> None:
    page = httpx.get(tiny_server.url + "/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    # Everything the page loads is served here, under /page/.
    for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert src.startswith("/page/") or src.startswith("data:"), src
        if src.startswith("/page/"):
            assert httpx.get(tiny_server.url + src, timeout=30).status_code == 200
    script = httpx.get(tiny_server.url + "/page/chat.js", timeout=30)
    assert script.headers["content-type"].startswith("text/javascript")
    missing = httpx.get(tiny_server.url + "/page/nothing.js", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    escape = httpx.get(tiny_server.url + "/page/..%2Fpage.py", timeout=30)
    assert escape.status_code == 404
    # FastAPI's own pages load their files from a CDN: off unless api_docs is set.
    assert httpx.get(tiny_server.url + "/docs", timeout=30).status_code == 404
    spec = httpx.get(tiny_server.url + "/openapi.json", timeout=30).json()
    assert "/" not in spec["paths"] and "/v1/sessions/{session_id}" in spec["paths"]


@pytest.mark.slow
def test_a_conversation_streams_stops_and_resumes_its_state_after_a_restart(
    browser: Any, tmp_path: Path, tiny_path: Path
) -> None:
    server = start(tmp_path, ctx=2048, parallel=1)
    try:
        tab = open_tab(browser, server)
        page = tab.page
        tab.setting("temperature", "0")

        # Streaming: the answer grows in several steps before it is done.
        page.fill("#input", "Write a short poem about the sea.")
        page.press("#input", "Enter")
        seen: set[int] = set()
        streaming = page.locator("#log article.streaming .body")
        streaming.wait_for(timeout=ANSWER_MS)
        while page.locator("#log article.streaming").count():
            try:
                seen.add(len(streaming.inner_text(timeout=1000)))
            except Exception:  # the answer finished between the check and the read
                break
        page.wait_for_selector("#log article.streaming", state="detached", timeout=ANSWER_MS)
        assert len(seen - {0}) >= 2, seen
        status = tab.status()
        assert "local" in status and "ttft" in status and "tok/s" in status, status
        assert "prefilled" in status, status
        first = page.locator("#log article.assistant .body").last.inner_text()
        assert first.strip()

        # Stop midway: the button ends the stream, the partial answer stays, the server is free.
        tab.setting("max-tokens", "1500")
        long_asks = stop_a_long_answer(tab)
        assert tab.status() == "stopped"
        assert page.locator("#send").is_visible()
        tab.setting("max-tokens", "48")

        # The same conversation goes on, its earlier turns found in the slot.
        tab.ask("Now one line about rivers.")
        assert "cached" in tab.status(), tab.status()
        listed = sessions(server)
        assert len(listed) == 1 and listed[0]["title"] == "Write a short poem about the sea."
        closed(tab)
    finally:
        server.stop()

    # After a restart the page lists the conversation; opening it and asking again restores
    # its KV state from disk instead of prefilling it.
    server = start(tmp_path, ctx=2048, parallel=1)
    try:
        tab = open_tab(browser, server)
        page = tab.page
        page.locator("#sessions li button.title").first.click()
        page.wait_for_selector("#log article.user")
        assert page.locator("#log article.user").count() == 2 + long_asks
        assert page.locator("#log article.assistant .body").first.inner_text() == first
        tab.ask("And one about the rain.")
        status = tab.status()
        restored = re.search(r"restored ([\d,]+) tok from disk", status)
        assert restored and int(restored.group(1).replace(",", "")) > 50, status
        closed(tab)
    finally:
        server.stop()


def test_conversations_are_renamed_regenerated_and_deleted(
    browser: Any, tiny_server: Server
) -> None:
    tab = open_tab(browser, tiny_server)
    page = tab.page
    tab.setting("max-tokens", "24")
    tab.ask("Name a color.")
    page.wait_for_selector("#sessions li.open")
    [mine] = [s for s in sessions(tiny_server) if s["title"] == "Name a color."]

    # Regenerate replaces the last answer, and the session keeps only the new one.
    page.click("#log article.assistant button.regenerate")
    page.wait_for_selector("#log article.streaming", state="detached", timeout=ANSWER_MS)
    assert page.locator("#log article.assistant").count() == 1
    detail = httpx.get(f"{tiny_server.url}/v1/sessions/{mine['id']}", timeout=30).json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]

    item = page.locator(f"#sessions li[data-id='{mine['id']}']")
    item.locator("button.rename").click()
    page.fill("#sessions input.rename-input", "Colors <b>bold</b>")
    page.press("#sessions input.rename-input", "Enter")
    page.wait_for_selector(f"#sessions li[data-id='{mine['id']}'] button.title:text('Colors')")
    assert item.locator("button.title").inner_text() == "Colors <b>bold</b>"  # text, not HTML
    assert [s["title"] for s in sessions(tiny_server) if s["id"] == mine["id"]] == [
        "Colors <b>bold</b>"
    ]

    dialogs: list[str] = []

    def accept(d: Any) -> None:
        dialogs.append(d.message)
        d.accept()

    page.on("dialog", accept)
    item.locator("button.delete").click()
    item.wait_for(state="detached")
    assert dialogs and "Colors" in dialogs[0]
    assert mine["id"] not in {s["id"] for s in sessions(tiny_server)}
    assert page.locator("#log article").count() == 0  # the open conversation was it
    closed(tab)


@pytest.mark.reliability(46)
def test_with_an_api_key_the_page_asks_for_it_once_and_keeps_it_out_of_urls(
    browser: Any, tmp_path: Path, tiny_path: Path
) -> None:
    key = "page-test-key-0123456789"
    server = start(tmp_path, env={"EDGEINF_API_KEY": key})
    try:
        assert httpx.get(server.url + "/v1/models", timeout=30).status_code == 401
        context = browser.new_context()
        page = context.new_page()
        tab = Tab(page, server)
        page.on("pageerror", lambda e: tab.errors.append(str(e)))
        page.on("request", lambda r: tab.requested.append(r.url))
        page.goto(server.url + "/")
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#key", "wrong-key")
        page.click("#key-dialog button[value=save]")
        page.wait_for_selector("#key-dialog[open]")  # refused: asked again, saying why
        assert "refused" in page.locator("#key-why").inner_text()
        page.fill("#key", key)
        page.click("#key-dialog button[value=save]")
        page.wait_for_function(MODELS_LISTED)
        tab.setting("max-tokens", "16")
        tab.ask("Say hello.")
        assert "prefilled" in tab.status()
        page.reload()  # kept: no dialog this time
        page.wait_for_selector("#sessions li")
        assert not page.locator("#key-dialog[open]").count()
        assert len(sessions(server, key)) == 1
        assert not any(key in u or "wrong-key" in u for u in tab.requested)
        assert {urlsplit(u).netloc for u in tab.requested} == {urlsplit(server.url).netloc}
        assert tab.errors == []
        context.close()
    finally:
        server.stop()
    assert "wrong-key" not in server.log.read_text() and key not in server.log.read_text()


@pytest.mark.reliability(46)
def test_what_a_model_writes_is_rendered_inert_and_tool_calls_readably(
    browser: Any, tiny_server: Server
) -> None:
    hostile = (
        "Here:\n\n<script>window.__pwned = 1</script>\n\n"
        '<img src=x onerror="window.__pwned = 2">\n\n'
        "[click me](javascript:window.__pwned=3) and [site](https://example.org/a)\n\n"
        "![pic](javascript:window.__pwned=4)\n\n"
        '```html\n<img src=x onerror="window.__pwned = 5">\n```\n\n'
        '**bold** `<b>code</b>` <a href="javascript:window.__pwned=6">raw</a>'
    )
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "<script>x</script>"}'},
    }
    history = [
        {"role": "user", "content": '<img src=x onerror="window.__pwned = 7">'},
        {"role": "assistant", "content": hostile},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'},
        {"role": "user", "content": 'Thanks. Reply with the JSON {"ok": true} only.'},
    ]
    # A conversation whose history holds all of it, kept by the server like any other.
    r = httpx.post(
        f"{tiny_server.url}/v1/chat/completions",
        json={"messages": history, "max_tokens": 8},
        headers={"X-Session-Id": "hostile"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    tab = open_tab(browser, tiny_server)
    page = tab.page
    page.locator("#sessions li[data-id='hostile'] button.title").click()
    page.wait_for_selector("#log article.tool")
    log = page.locator("#log")
    text = log.inner_text()
    assert "<script>window.__pwned = 1</script>" in text  # shown as text
    assert '<img src=x onerror="window.__pwned = 7">' in text
    assert log.locator("script, img, iframe, [onerror]").count() == 0
    hrefs = [a.get_attribute("href") for a in log.locator("a").all()]
    assert hrefs == ["https://example.org/a"], hrefs
    assert log.locator("strong").inner_text() == "bold"
    assert log.locator("code", has_text="<b>code</b>").count() == 1
    for link in log.locator("a").all():
        assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    # The tool call and its result read as named, indented JSON.
    calls = log.locator(".tool-call")
    assert calls.locator(".tool-name").inner_text() == "calls get_weather"
    assert '"city": "<script>x</script>"' in calls.locator("pre").inner_text()
    assert '"temp": 18' in log.locator(".tool-result pre").text_content()  # folded
    closed(tab)


def test_the_model_picker_lists_every_local_model_and_switches_between_them(
    browser: Any, tmp_path: Path, tiny_path: Path, draft_path: Path
) -> None:
    server = start(tmp_path, parallel=1)
    try:
        tab = open_tab(browser, server)
        page = tab.page
        options = page.locator("#model option").all_inner_texts()
        assert f"{TINY} (loaded)" in options and DRAFT in options, options
        page.select_option("#model", DRAFT)
        tab.setting("max-tokens", "16")
        tab.ask("Say hello.")
        [s] = sessions(server)
        assert s["model"] == DRAFT
        page.reload()
        page.wait_for_function(MODELS_LISTED)
        assert page.locator("#model").input_value() == DRAFT  # the choice is kept
        assert f"{DRAFT} (loaded)" in page.locator("#model option").all_inner_texts()
        closed(tab)
    finally:
        server.stop()


@pytest.mark.slow
def test_each_answer_says_its_route_and_a_private_conversation_stays_local(
    browser: Any, tmp_path: Path, tiny_server: Server
) -> None:
    """The remote is a second real server; then one that is not there."""
    remotes = {
        tiny_server.url + "/v1": "remote (override)",
        f"http://127.0.0.1:{free_port()}/v1": "local · fallback",  # nothing listens there
    }
    for remote, expected in remotes.items():
        env = {"EDGEINF_REMOTE_URL": remote, "EDGEINF_REMOTE_MODEL": TINY}
        server = start(tmp_path, env=env)
        try:
            tab = open_tab(browser, server)
            tab.setting("max-tokens", "12")
            tab.page.select_option("#route", "remote")
            tab.ask("Name a planet.")
            assert tab.status().startswith(expected), tab.status()
            tab.page.check("#private")  # from now on this conversation stays here
            tab.ask("Name another.")
            assert tab.status().startswith("local (private)"), tab.status()
            tab.page.reload()
            tab.page.wait_for_function(MODELS_LISTED)
            tab.page.locator("#sessions li button.title").first.click()
            tab.page.wait_for_selector("#log article.user")
            assert tab.page.is_checked("#private")  # kept by the browser for this conversation
            closed(tab)
        finally:
            server.stop()


@pytest.mark.slow
def test_a_conversation_past_the_context_goes_on_with_its_older_turns_summarized(
    browser: Any, tmp_path: Path, tiny_path: Path
) -> None:
    server = start(tmp_path, ctx=512, parallel=1)
    try:
        tab = open_tab(browser, server)
        tab.setting("max-tokens", "8")
        tab.page.select_option("#context-policy", "summarize")
        line = "The lighthouse keeper counted ships and wrote each one down. "
        # Each message about 80 tokens: four fit in 512, and a few more are past it however
        # short the 270M's answers are.
        statuses = []
        for i in range(9):
            tab.ask(f"Part {i}: " + line * 6)
            statuses.append(tab.status())
            if re.search(r"\d+ older messages summarized", statuses[-1]):
                break
        else:
            raise AssertionError(f"nothing summarized past the context: {statuses}")
        assert len(statuses) > 4, statuses
        closed(tab)
    finally:
        server.stop()
