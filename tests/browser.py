"""Open the testbed's HTML pages in a real browser: Debian's Chromium, headless, driven by Playwright.

What a page must not have: a console error or an uncaught exception, a request that failed, an image that did not
load, a panel without data (class empty) or with a failed query (class failed). Each page's screenshot is kept.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

ARTIFACTS = Path(__file__).resolve().parents[1] / ".testbed" / "artifacts" / "browser"
BROKEN_IMAGES = "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
BAD_PANELS = (
    "[...document.querySelectorAll('.panel.empty, .panel.failed')]"
    ".map(p => p.className + ': ' + p.querySelector('h3').textContent)"
)


@contextmanager
def chromium() -> Iterator[Browser]:
    binary = shutil.which("chromium")
    assert binary, "chromium not found: install the Debian package chromium (make bootstrap does)"
    with sync_playwright() as p:
        # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def problems(browser: Browser, page_path: Path, screenshot: str) -> list[str]:
    """Everything wrong with the page at page_path; its full-page screenshot goes to ARTIFACTS/<screenshot>.png."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    found: list[str] = []
    page.on("console", lambda m: found.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: found.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: found.append(f"request failed: {r.url} ({r.failure})"))
    page.goto(page_path.resolve().as_uri(), wait_until="load")
    found += [f"broken image: {src}" for src in page.evaluate(BROKEN_IMAGES)]
    found += [f"panel {what}" for what in page.evaluate(BAD_PANELS)]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{screenshot}.png"), full_page=True)
    page.close()
    return [f"{page_path.name}: {line}" for line in found]
