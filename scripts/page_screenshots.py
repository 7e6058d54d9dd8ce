#!/usr/bin/env python
"""Screenshots of the search page (``personlens serve``'s ``/``) in each state, at 1366 and 390 px.

Starts a real server (uvicorn, in this process) on the test suite's fake pipeline with 60
synthetic people on 3 cameras (``tests/serve/page_testlib.py``: drawn figures, no real
people, no model), drives Debian's chromium with playwright and writes
``OUT/page-{1366,390}-{results,filters,drawer,similar,empty,error}.png``::

    .venv/bin/python scripts/page_screenshots.py                 # -> docs/img/
    .venv/bin/python scripts/page_screenshots.py --out /tmp/shots --widths 390
    .venv/bin/python scripts/page_screenshots.py --serve         # keep serving; print the URL

Needs ``/usr/bin/chromium`` (or ``PERSONLENS_CHROMIUM``) and the ``playwright`` package.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "serve"))

from page_testlib import WIDTHS, PagePipeline, launch, people, seed
from PIL import Image
from serve_testlib import TOKEN, live_server

from personlens.serve.config import ServeConfig

THUMBS_LOADED = """() => { const imgs = [...document.querySelectorAll('#grid .card img')];
    return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


def _ready(page, drawer=False):
    page.wait_for_function("document.querySelector('#results').getAttribute('aria-busy') === 'false'")
    page.wait_for_function(THUMBS_LOADED)
    if drawer:
        page.wait_for_function("document.querySelector('#drawer-body img.photo')?.naturalWidth > 0")
    page.wait_for_timeout(150)


def shoot(url: str, out: Path, width: int) -> list[Path]:
    from playwright.sync_api import sync_playwright

    made = []
    phone = width < 700
    with sync_playwright() as pw:
        browser = launch(pw)
        ctx = browser.new_context(viewport=WIDTHS[width], timezone_id="UTC", locale="en-GB",
                                  is_mobile=phone, has_touch=phone, device_scale_factor=1)
        ctx.add_init_script(f"try {{ localStorage.setItem('personlens_token', {TOKEN!r}); }} catch (e) {{}}")
        page = ctx.new_page()
        page.set_default_timeout(30000)
        page.on("console", lambda m: print("console:", m.type, m.text)           # the error shot's 422 is expected
                if m.type in ("error", "warning") and not m.text.startswith("Failed to load resource") else None)
        page.on("pageerror", lambda e: print("pageerror:", e))

        def load(hash_):          # a fresh page load (not a same-document hash change)
            page.goto("about:blank")
            page.goto(url + "/" + hash_)

        def snap(name):
            path = out / f"page-{width}-{name}.png"
            page.screenshot(path=str(path))
            # 256 colours: a third of the bytes, no visible change for a page of flat colours
            Image.open(path).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
            made.append(path)

        # results: a sentence, one filter
        load("#q=a+woman+with+a+backpack&where=carryingBackpack%3Dyes")
        _ready(page)
        snap("results")
        # filters: a camera, a time window, a "no" chip (personalMale=no reads "woman")
        load("#where=personalMale%3Dno&where=carryingBackpack%3Dyes&camera=lobby"
                        "&after=2024-05-01T12%3A00%3A00Z")
        _ready(page)
        if phone:
            page.click("#filters-toggle")
        page.wait_for_timeout(150)
        snap("filters")
        # the drawer, then "more like this" from it
        load("#q=a+man+in+a+red+top")
        _ready(page)
        first = page.locator("#grid .card").first
        first.tap() if phone else first.click()
        page.wait_for_selector("#drawer:not([hidden])")
        _ready(page, drawer=True)
        snap("drawer")
        page.check("#other-cameras")
        page.click("#more-like-this")
        page.wait_for_function("document.querySelector('#title').textContent.includes('look like')")
        _ready(page, drawer=not phone)
        snap("similar")
        # nothing matches; a readable error
        load("#where=personalMale%3Dyes&where=hairLong%3Dyes&where=accessoryHat%3Dyes"
                        "&where=lowerBodyShorts%3Dyes")
        page.wait_for_selector("#empty")
        page.wait_for_timeout(150)
        snap("empty")
        load("#q=" + "x" * 501)
        page.wait_for_selector("#error:not([hidden])")
        snap("error")
        ctx.close()
        browser.close()
    return made


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--widths", type=int, nargs="+", default=[1366, 390], choices=sorted(WIDTHS))
    ap.add_argument("--serve", action="store_true", help="only serve the demo data until Ctrl-C")
    a = ap.parse_args(argv)
    persons = people()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ServeConfig(db=Path(tmp) / "db", max_batch=64, max_wait_ms=5)
        with live_server(cfg, PagePipeline(persons)) as (url, _, _):
            seed(url, persons)
            if a.serve:
                print(f"serving {len(persons)} people: {url}/?token={TOKEN}", flush=True)
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    return
            a.out.mkdir(parents=True, exist_ok=True)
            for w in a.widths:
                for p in shoot(url, a.out, w):
                    print(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)


if __name__ == "__main__":
    main()
