"""Picture the web chat of a running `edgeinf serve`: ask it a question in headless Chromium
and save the page as PNG (the README's picture).

    python tools/page_screenshot.py --url http://127.0.0.1:8080 --out page.png \\
        --ask "Write a Python function that reverses a string, with one line of explanation."

Needs Chromium (Debian's `chromium`) and the `playwright` package (a dev dependency); no
browser download: Playwright drives the system's Chromium."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("EDGEINF_CHROMIUM", "/usr/bin/chromium")
# Without these, Chromium reaches for Google's services at start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

MODELS_LISTED = "() => document.querySelectorAll('#model option').length > 0"  # page up


def launch(playwright: Any) -> Any:
    """The system's Chromium, headless, driven by Playwright."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ask", action="append", default=[], help="a question (repeatable)")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=760)
    a = ap.parse_args()
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": a.width, "height": a.height})
        page.goto(a.url + "/")
        page.wait_for_function(MODELS_LISTED)
        page.click("#settings summary")
        page.fill("#max-tokens", str(a.max_tokens))
        page.fill("#temperature", "0")
        page.click("#settings summary")
        for question in a.ask:
            page.fill("#input", question)
            page.press("#input", "Enter")
            page.wait_for_selector("#log article.assistant")
            page.wait_for_selector("#log article.streaming", state="detached", timeout=300_000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(a.out))
        browser.close()
    print(a.out)


if __name__ == "__main__":
    main()
