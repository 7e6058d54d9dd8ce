"""The search page in a real browser (Debian chromium driven by playwright; skipped without it):
token prompt, attribute chips, search by phrase, thumbnails, details, "more like this"."""
from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from serve_testlib import TOKEN, auth, crop_png, live_server

from personlens.serve.config import ServeConfig

CHROMIUM = os.environ.get("PERSONLENS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        "--disable-dev-shm-usage"]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture()
def browser():
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        except Exception as e:  # pragma: no cover - a broken browser install
            pytest.skip(f"chromium does not start: {e}")
        yield b
        b.close()


def test_search_page_end_to_end(tmp_path, pipeline, browser):
    cfg = ServeConfig(db=tmp_path / "db", max_batch=8, max_wait_ms=5)
    with live_server(cfg, pipeline) as (url, server, service):
        r = httpx.post(url + "/v1/persons", headers=auth(), timeout=60,
                       files=[("files", (f"{i}.png", crop_png(i, (48, 112)), "image/png"))
                              for i in range(6)], data={"camera": "door"})
        assert r.status_code == 200, r.text
        ids = {x["id"] for x in r.json()["records"]}
        page = browser.new_page()
        page.set_default_timeout(20000)
        asked = []
        page.on("request", lambda req: asked.append(req.url))
        page.goto(url + "/")
        page.wait_for_selector("#token-dialog:not([hidden])")        # 401 -> asks for the token
        page.fill("#token-input", TOKEN)
        page.click("#token-form button[type=submit]")
        page.wait_for_selector(".chip[data-name='carryingBackpack']")
        assert page.locator(".chip").count() == 4
        page.wait_for_selector("#grid .card")                          # the first view: everyone
        assert page.locator("#grid .card").count() == 6

        page.fill("#q", "a man carrying a backpack")
        page.press("#q", "Enter")
        page.wait_for_function("document.querySelector('#title').textContent.includes('a man carrying')")
        page.wait_for_function("""() => { const imgs = [...document.querySelectorAll('#grid .card img')];
            return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }""")
        cards = page.locator("#grid .card")
        assert cards.count() == 6
        assert {cards.nth(i).get_attribute("data-id") for i in range(6)} == ids
        assert page.locator("#grid .card .score").count() == 6

        page.click(".chip[data-name='carryingBackpack']")               # filter: yes
        page.wait_for_function("document.querySelector('#title').textContent.includes('carrying a backpack')")
        kept = page.locator("#grid .card").count()
        expected = httpx.get(url + "/v1/search", headers=auth(),
                             params={"q": "a man carrying a backpack",
                                     "where": "carryingBackpack=yes"}).json()["results"]
        assert kept == len(expected) or (kept == 1 and not expected)
        page.click(".chip[data-name='carryingBackpack']")               # -> no
        page.click(".chip[data-name='carryingBackpack']")               # -> any
        page.wait_for_function("document.querySelectorAll('#grid .card').length === 6")

        first = page.locator("#grid .card").first
        chosen = first.get_attribute("data-id")
        first.click()
        page.wait_for_selector("#details:not([hidden]) #more-like-this")
        page.wait_for_function("document.querySelector('#details img').naturalWidth > 0")
        assert chosen in page.inner_text("#details")
        page.click("#more-like-this")
        page.wait_for_function("document.querySelector('#title').textContent.includes('look like')")
        similar = page.locator("#grid .card")
        got = {similar.nth(i).get_attribute("data-id") for i in range(similar.count())}
        assert got == ids - {chosen}
        # the person's camera is known, so "more like this" ranks after per-camera centring
        assert any("/similar?" in u and "camera_centring=true" in u for u in asked)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        assert page.evaluate("localStorage.getItem('personlens_token')") == TOKEN
