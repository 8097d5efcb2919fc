"""A report page in a real browser: headless Chromium (the system's, driven by Playwright) loads a file
URL and says what a user's browser would: console errors, uncaught exceptions, every request it made,
the figures that failed to decode, and a screenshot of each ``<section>``.

Needs ``playwright`` (the ``test`` extra) and a Chromium binary (``apt-get install chromium``; or the path
in ``SEESAY_CHROMIUM``). No browser download: Playwright drives the system's Chromium.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

# Chromium flags for a closed network (no background connections that the machine would refuse)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]


VISIBLE_CARDS = "s => Array.from(s.querySelectorAll('.card')).filter(c => c.offsetParent !== null).length"


def chromium_path() -> str | None:
    """The Chromium to use: ``SEESAY_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH."""
    env = os.environ.get("SEESAY_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageCheck:
    """What the browser saw (see :func:`check_page`)."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    images: int = 0
    broken_images: list[str] = field(default_factory=list)  # alt text of images that did not decode
    sections: dict[str, Path] = field(default_factory=dict)  # section kind (+ index) -> its screenshot
    clicks: dict[str, tuple[int, int]] = field(default_factory=dict)  # filter -> (cards shown, expected)

    @property
    def network(self) -> list[str]:
        """Requests that left the file (anything but file: and data: URLs)."""
        return [u for u in self.requests if not u.startswith(("file:", "data:"))]


def check_page(html: Path, shots: Path | None = None, full_page: Path | None = None) -> PageCheck:
    """Load ``html`` from its file URL; screenshot each section into ``shots`` (and the whole page into
    ``full_page``); click every gallery filter button and count the cards it shows."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("no Chromium found (apt-get install chromium, or set SEESAY_CHROMIUM)")
    result = PageCheck()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type == "error" and result.console_errors.append(m.text))
            page.on("pageerror", lambda e: result.page_errors.append(str(e)))
            page.on("request", lambda r: result.requests.append(r.url))
            page.goto(Path(html).resolve().as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])"
            )
            result.images = len(images)
            result.broken_images = [alt for alt, ok in images if not ok]
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
                page.add_style_tag(content="nav{position:static !important}")  # not over each section
                for k, section in enumerate(page.query_selector_all("main > section")):
                    kind = section.get_attribute("data-kind") or "section"
                    path = shots / f"{k:02d}_{kind}.png"
                    section.screenshot(path=str(path))
                    result.sections[f"{k:02d}_{kind}"] = path
            for gallery in page.query_selector_all("section.gallery"):
                for button in gallery.query_selector_all(".filters button"):
                    tag = button.get_attribute("data-tag") or ""
                    expected = int(button.inner_text().rsplit("(", 1)[1].rstrip(")"))
                    button.click()
                    shown = gallery.evaluate(VISIBLE_CARDS)
                    result.clicks[tag] = (shown, expected)
                all_button = gallery.query_selector('.filters button[data-tag="all"]')
                if all_button is not None:
                    all_button.click()
            if full_page is not None:
                page.screenshot(path=str(full_page), full_page=True)
        finally:
            browser.close()
    return result
