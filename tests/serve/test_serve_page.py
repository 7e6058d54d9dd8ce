"""The search page in a real browser (Debian chromium driven by playwright; skipped without it),
at 1366 px (desktop) and 390 px (phone), against a real server on the fake pipeline with 60
stored people on 3 cameras over two days (``page_testlib``).

Flows: token prompt and the ``/?token=`` cookie, tri-state attribute chips, camera and time
facets, camera/time on cards, the details drawer ("more like this" at its top, other cameras
only, Escape), the URL as state (reload, Back, shared links), keyboard ("/", Tab, Enter),
"load more" with the total, the empty state, readable errors, no sideways scroll on a phone,
search by photo."""
from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from serve_testlib import TOKEN, auth, live_server

from personlens.serve.config import ServeConfig

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from page_testlib import CHROMIUM, WIDTHS, PagePipeline, launch, people, seed

if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)

BUSY_DONE = "document.querySelector('#results').getAttribute('aria-busy') === 'false'"
THUMBS_LOADED = """() => { const imgs = [...document.querySelectorAll('#grid .card img')];
    return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One server for the module (the page tests only read): (url, persons, records by id)."""
    persons = people()
    cfg = ServeConfig(db=tmp_path_factory.mktemp("page") / "db", max_batch=64, max_wait_ms=5)
    with live_server(cfg, PagePipeline(persons)) as (url, _server, _service):
        records = seed(url, persons)
        yield SimpleNamespace(url=url, persons=persons, by_id={p.id: p for p in persons},
                              records={r["id"]: r for r in records})


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        try:
            b = launch(p)
        except Exception as e:  # noqa: BLE001  # pragma: no cover - a broken browser install
            pytest.skip(f"chromium does not start: {e}")
        yield b
        b.close()


def _context(browser, width, token=True):
    phone = width < 700
    ctx = browser.new_context(viewport=WIDTHS[width], timezone_id="UTC", locale="en-GB",
                              is_mobile=phone, has_touch=phone)
    if token:
        ctx.add_init_script(f"try {{ localStorage.setItem('personlens_token', {TOKEN!r}); }} catch (e) {{}}")
    return ctx


class View:
    """A page at one width, with the API requests it made."""

    def __init__(self, page, width, site):
        self.page, self.width, self.site = page, width, site
        self.phone = width < 700
        self.requests: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url) if "/v1/" in r.url else None)
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, hash_: str = "", route: str = "/v1/search"):
        """A fresh load of ``/`` + ``hash_``, waiting for its result request."""
        self.page.goto("about:blank")
        return self.after(lambda: self.page.goto(self.site.url + "/" + hash_), route)

    def after(self, action, route: str = "/v1/search", method: str = "GET"):
        """Do ``action``, wait for the API answer on ``route`` and for the page to show it."""
        with self.page.expect_response(lambda r: urlsplit(r.url).path.startswith(route)
                                       and r.request.method == method) as info:
            action()
        self.page.wait_for_function(BUSY_DONE)
        return info.value

    def activate(self, locator):
        """Tap on the phone, click on the desktop."""
        locator.tap() if self.phone else locator.click()

    def show_filters(self):
        if self.phone and not self.page.evaluate("document.body.classList.contains('filters-open')"):
            self.page.click("#filters-toggle")
        self.page.wait_for_selector("#filters .chip", state="visible")

    def settled(self):
        """The first load (or the one after a cross-document Back) has been shown."""
        self.page.wait_for_function(BUSY_DONE)

    def card_ids(self) -> list[str]:
        return self.page.eval_on_selector_all("#grid .card", "cs => cs.map(c => c.dataset.id)")

    def hash_params(self) -> dict:
        return parse_qs(urlsplit(self.page.url).fragment)

    def api(self, path, **params):
        r = httpx.get(self.site.url + path, params=params, headers=auth(), timeout=30)
        return r


@pytest.fixture(scope="module", params=[1366, 390], ids=["desktop", "phone"])
def context(request, browser):
    """One browser context per width (a new page per test: its own history and script state)."""
    ctx = _context(browser, request.param)
    ctx.width = request.param
    yield ctx
    ctx.close()


@pytest.fixture()
def view(context, site):
    page = context.new_page()
    page.set_default_timeout(15000)
    v = View(page, context.width, site)
    yield v
    page.close()
    assert not v.errors, v.errors


def _query(url: str) -> dict:
    return parse_qs(urlsplit(url).query)


# ---------------------------------------------------------------------- auth
@pytest.mark.parametrize("width", [1366, 390], ids=["desktop", "phone"])
def test_token_prompt_and_cookie_link(browser, site, width):
    """Without a token the page asks for it once (kept in localStorage); ``/?token=`` sets the
    cookie instead and the page works without asking."""
    ctx = _context(browser, width, token=False)
    page = ctx.new_page()
    page.set_default_timeout(15000)
    page.goto(site.url + "/")
    page.wait_for_selector("#token-dialog:not([hidden])")        # 401 -> asks for the token
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#grid .card")
    assert page.evaluate("localStorage.getItem('personlens_token')") == TOKEN
    ctx.close()

    ctx = _context(browser, width, token=False)
    page = ctx.new_page()
    page.set_default_timeout(15000)
    page.goto(site.url + f"/?token={TOKEN}#q=a+man")                # 303 to / with the cookie
    page.wait_for_function(THUMBS_LOADED)                            # thumbnails load by cookie too
    assert 'Results for "a man"' in page.inner_text("#title")         # the hash survived the redirect
    assert page.locator("#token-dialog").is_hidden()
    assert page.evaluate("localStorage.getItem('personlens_token')") is None
    assert urlsplit(page.url).query == ""                            # the token is not left in the URL
    # a photo is POSTed: the cookie does not cover it, so the page asks, says why, and goes on
    page.set_input_files("#photo-input", files=[{"name": "q.png", "mimeType": "image/png",
                                                 "buffer": site.persons[0].png}])
    page.wait_for_selector("#token-dialog:not([hidden])")
    assert "photo" in page.inner_text("#token-error")
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    page.wait_for_function("document.querySelector('#title').textContent.includes('your photo')")
    page.wait_for_function(BUSY_DONE)
    assert page.locator("#grid .card").count() > 0
    ctx.close()


# ---------------------------------------------------------------------- filters
def test_chips_are_grouped_tri_state_buttons(view, site):
    v, page = view, view.page
    v.open()
    attrs = v.api("/v1/attributes").json()["attributes"]
    if v.phone:                                                      # collapsed on a phone
        assert page.locator("#filters").is_hidden()
        assert page.get_attribute("#filters-toggle", "aria-expanded") == "false"
    v.show_filters()
    assert page.locator("details.group").count() == len({a["group"] for a in attrs})
    assert page.locator("details.group .chip").count() == len(attrs)
    assert set(page.eval_on_selector_all("details.group .chip", "cs => cs.map(c => c.tagName)")) == {"BUTTON"}

    chip = page.locator(".chip[data-name='carryingBackpack']")
    assert chip.get_attribute("aria-pressed") == "false"
    seen = []
    for state in ("yes", "no", "any"):
        r = v.after(chip.click)
        where = _query(r.url).get("where", [])
        seen.append(where)
        assert chip.get_attribute("data-state") == state
        assert chip.get_attribute("aria-pressed") == ("false" if state == "any" else "true")
        assert chip.get_attribute("aria-label").endswith(": " + state)
        ids = v.card_ids()
        want = [x["id"] for x in r.json()["results"]]
        assert ids == want and ids
        present = [site.records[i]["present"] for i in ids]
        if state == "yes":
            assert all("carryingBackpack" in p for p in present)
        elif state == "no":
            assert not any("carryingBackpack" in p for p in present)
    assert seen == [["carryingBackpack=yes"], ["carryingBackpack=no"], []]

    # an attribute near chance on new cameras is marked, and says why; one that holds is not
    shades = page.locator(".chip[data-name='accessorySunglasses']")
    assert shades.get_attribute("data-transfer") == "near chance"
    assert "near chance on cameras the model never saw: AUC 0.46" in shades.get_attribute("title")
    assert "(unreliable on new cameras): any" in shades.get_attribute("aria-label")
    assert page.eval_on_selector(".chip[data-name='accessorySunglasses']",
                                 "c => getComputedStyle(c).borderTopStyle") == "dashed"
    for name, rating in (("personalMale", "holds"), ("footwearSneaker", "weak"), ("hairLong", "")):
        c = page.locator(f".chip[data-name='{name}']")
        assert c.get_attribute("data-transfer") == rating
        assert "unreliable" not in c.get_attribute("aria-label")
        assert ("weaker on cameras" in c.get_attribute("title")) == (rating == "weak")

    male = page.locator(".chip[data-name='personalMale']")          # "no" reads "woman"
    v.after(male.click)
    r = v.after(male.click)
    assert _query(r.url)["where"] == ["personalMale=no"]
    assert male.inner_text().strip().endswith("woman")
    assert "woman" in male.get_attribute("aria-label")
    assert "woman" in page.inner_text("#active")
    assert all("personalMale" not in site.records[i]["present"] for i in v.card_ids())


def test_camera_and_time_facets(view, site):
    v, page = view, view.page
    r = v.api("/v1/cameras")
    assert r.status_code == 200, "GET /v1/cameras is not there"
    cameras = {c["name"]: c["count"] for c in r.json()["cameras"]}
    assert cameras == {"door": 20, "lobby": 20, "yard": 20}
    v.open()
    v.show_filters()
    chips = page.locator("#cameras .camera-chip")
    assert chips.count() == 3
    assert page.inner_text("#cameras .camera-chip[data-camera='lobby']").split() == ["lobby", "20"]
    assert "20 people" in page.get_attribute("#cameras .camera-chip[data-camera='lobby']", "aria-label")
    r = v.after(lambda: page.click("#cameras .camera-chip[data-camera='lobby']"))
    assert _query(r.url)["camera"] == ["lobby"]
    assert page.get_attribute("#cameras .camera-chip[data-camera='lobby']", "aria-pressed") == "true"
    assert set(page.locator("#grid .card .cam").all_inner_texts()) == {"lobby"}
    assert page.locator("#grid .card").count() == 20
    r = v.after(lambda: page.click("#cameras .camera-chip[data-camera='door']"))   # any of several
    assert _query(r.url)["camera"] == ["lobby", "door"]
    assert set(page.locator("#grid .card .cam").all_inner_texts()) == {"lobby", "door"}
    r = v.after(lambda: page.click("#cameras .camera-chip[data-camera='door']"))
    assert _query(r.url)["camera"] == ["lobby"]
    assert page.get_attribute("#cameras .camera-chip[data-camera='door']", "aria-pressed") == "false"

    r = v.after(lambda: page.fill("#after", "2024-05-02T00:00"))
    assert _query(r.url)["after"] == ["2024-05-02T00:00:00Z"]
    r = v.after(lambda: page.fill("#before", "2024-05-02T12:00"))
    assert _query(r.url)["before"] == ["2024-05-02T12:00:00Z"]
    lo = datetime(2024, 5, 2, tzinfo=UTC).timestamp()
    hi = datetime(2024, 5, 2, 12, tzinfo=UTC).timestamp()
    want = sorted(p.id for p in site.persons if p.camera == "lobby" and lo <= p.timestamp < hi)
    assert want and sorted(v.card_ids()) == want
    for t in page.locator("#grid .card .when").all_inner_texts():
        assert "2024-05-02 00:00:00" <= t < "2024-05-02 12:00:00"
    assert {"camera lobby", "after 2024-05-02 00:00", "before 2024-05-02 12:00"} <= {
        s.replace("×", "").strip() for s in page.locator("#active .pill").all_inner_texts()}


def test_cards_show_camera_and_time(view, site):
    v, page = view, view.page
    v.open("#q=" + quote("a person with a backpack"))
    page.wait_for_function(THUMBS_LOADED)
    cards = page.locator("#grid .card")
    assert cards.count() == 48
    for i in range(6):
        c = cards.nth(i)
        p = site.by_id[c.get_attribute("data-id")]
        assert c.locator(".cam").inner_text() == p.camera
        assert c.locator(".when").inner_text() == p.time.strftime("%Y-%m-%d %H:%M:%S")
        assert c.locator(".score").count() == 1
        assert p.camera in c.get_attribute("aria-label")
    # timestamp_iso missing: the epoch seconds are formatted; a video track shows its span
    assert page.evaluate("localText(recordTime({timestamp: 1714550400}))") == "2024-05-01 08:00:00"
    assert page.evaluate("localText(recordTime({timestamp: 1, timestamp_iso: '2024-05-01T09:30:00Z'}))") \
        == "2024-05-01 09:30:00"
    assert page.evaluate("recordTime({timestamp: null})") is None
    assert page.evaluate("spanText({start: 1714550400, end: 1714550412.5})") \
        == "2024-05-01 08:00:00 – 08:00:12 (12.5 s)"


# ---------------------------------------------------------------------- drawer
def test_drawer_more_like_this_and_escape(view, site):
    v, page = view, view.page
    v.open("#q=" + quote("a man with a hat"))
    page.wait_for_function(THUMBS_LOADED)
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # far down the grid
    card = page.locator("#grid .card").nth(40)
    chosen = card.get_attribute("data-id")
    v.activate(card)
    drawer = page.locator("#drawer")
    drawer.wait_for(state="visible")
    page.wait_for_function("document.querySelector('#drawer-body img.photo').naturalWidth > 0")
    p = site.by_id[chosen]
    text = drawer.inner_text()
    assert chosen in text and p.camera in text and p.description in text
    assert p.time.strftime("%Y-%m-%d %H:%M:%S") in text
    assert page.locator("#drawer-body h3").count() >= 3                 # attributes, grouped
    top = page.locator("#more-like-this").bounding_box()
    assert top["y"] < page.locator("#drawer-body img.photo").bounding_box()["y"]
    assert top["y"] + top["height"] <= 140                              # at the top, in view
    box = drawer.bounding_box()
    if v.phone:                                                         # a full-screen sheet
        assert box["width"] == 390 and box["height"] == 844
    else:                                                               # a side panel
        assert box["x"] > 800 and box["x"] + box["width"] == 1366
        assert page.locator("#grid .card").first.is_visible()

    r = v.after(lambda: page.click("#more-like-this"), route=f"/v1/persons/{chosen}/similar")
    q = _query(r.url)
    assert q["camera_centring"] == ["true"] and q["other_cameras"] == ["false"]
    assert "look like " + chosen[:8] in page.inner_text("#title")
    ids = v.card_ids()
    assert ids == [x["id"] for x in r.json()["results"]][:48] and chosen not in ids
    assert page.evaluate("window.scrollY") == 0                          # back at the new results
    assert page.locator("#results-title").is_visible()

    if v.phone:                                                         # the sheet made way for them
        assert drawer.is_hidden()
        v.activate(page.locator(f"#grid .card[data-id='{ids[0]}']"))
        drawer.wait_for(state="visible")
        chosen, p = ids[0], site.by_id[ids[0]]
        page.check("#other-cameras")
        r = v.after(lambda: page.click("#more-like-this"), route=f"/v1/persons/{chosen}/similar")
    else:
        r = v.after(lambda: page.check("#other-cameras"), route=f"/v1/persons/{chosen}/similar")
    assert _query(r.url)["other_cameras"] == ["true"]
    cams = page.locator("#grid .card .cam").all_inner_texts()
    assert cams and p.camera not in cams
    assert "other cameras only" in page.inner_text("#title")

    if drawer.is_hidden():
        v.activate(page.locator("#grid .card").first)
        drawer.wait_for(state="visible")
    page.keyboard.press("Escape")
    drawer.wait_for(state="hidden")
    assert "person" not in v.hash_params()


# ---------------------------------------------------------------------- URL state
def test_url_keeps_the_state_reload_and_back(view, site):
    v, page = view, view.page
    v.open()
    page.fill("#q", "a woman in jeans")
    v.after(lambda: page.press("#q", "Enter"))
    v.show_filters()
    v.after(lambda: page.click(".chip[data-name='lowerBodyJeans']"))
    if v.phone:
        page.click("#filters-done")
    first = page.locator("#grid .card").first
    chosen = first.get_attribute("data-id")
    v.activate(first)
    page.locator("#drawer").wait_for(state="visible")
    assert v.hash_params() == {"q": ["a woman in jeans"], "where": ["lowerBodyJeans=yes"], "person": [chosen]}
    shown = v.card_ids()

    v.after(page.reload)                                              # reload: the same view
    page.locator("#drawer").wait_for(state="visible")
    assert page.input_value("#q") == "a woman in jeans"
    assert page.get_attribute(".chip[data-name='lowerBodyJeans']", "data-state") == "yes"
    assert chosen[:8] in page.inner_text("#drawer-title")
    assert v.card_ids() == shown

    page.go_back()                                                    # Back: the drawer closes
    page.locator("#drawer").wait_for(state="hidden")
    v.settled()
    assert v.card_ids() == shown
    page.go_back()                                                    # Back: the filter goes
    page.wait_for_function("document.querySelector(\".chip[data-name='lowerBodyJeans']\").dataset.state === 'any'")
    page.wait_for_function(BUSY_DONE)
    assert page.input_value("#q") == "a woman in jeans"
    assert len(v.card_ids()) == 48
    page.go_back()                                                    # Back: the query goes
    page.wait_for_function("document.querySelector('#q').value === ''")
    page.wait_for_function("document.querySelector('#title').textContent === 'People'")

    # a shared link: "more like this" of a person, other cameras only
    link = f"#similar={chosen}&other=1"
    v.open(link, route=f"/v1/persons/{chosen}/similar")
    assert "look like " + chosen[:8] in page.inner_text("#title")
    assert site.by_id[chosen].camera not in page.locator("#grid .card .cam").all_inner_texts()


# ---------------------------------------------------------------------- keyboard
def test_keyboard_slash_tab_enter_escape(view, site):
    v, page = view, view.page
    v.open()
    page.evaluate("""() => { window.__focused = [];
        document.addEventListener('focusin', (ev) => { const e = ev.target;
            window.__focused.push(e.id ? '#' + e.id : e.classList.contains('card') ? '.card'
                                  : e.classList.contains('chip') ? '.chip' : e.tagName); }); }""")
    for _ in range(8):                                                 # Tab reaches every control
        page.keyboard.press("Tab")
    if v.phone:                                                        # the phone's filters: Enter opens
        assert page.evaluate("window.__focused").index("#filters-toggle") >= 0
        page.focus("#filters-toggle")
        page.keyboard.press("Enter")
        assert page.locator("#filters .chip").first.is_visible()
    for _ in range(15):
        for _ in range(10):
            page.keyboard.press("Tab")
        if "#load-more" in page.evaluate("window.__focused"):
            break
    reached = set(page.evaluate("window.__focused"))
    need = {"#q", "#search-button", "#photo-button", "#after", "#before", ".chip", ".card", "#load-more",
            "SUMMARY"}
    if v.phone:
        need |= {"#filters-toggle", "#filters-done"}
    assert need <= reached, need - reached

    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("/")                                           # "/" goes to the search box
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("a man/woman")                                  # and types there
    assert page.input_value("#q") == "a man/woman"
    v.after(lambda: page.keyboard.press("Enter"))
    assert "a man/woman" in page.inner_text("#title")

    card = page.locator("#grid .card").nth(2)
    chosen = card.get_attribute("data-id")
    card.focus()
    page.keyboard.press("Enter")                                       # Enter opens a focused card
    page.locator("#drawer").wait_for(state="visible")
    assert chosen[:8] in page.inner_text("#drawer-title")
    assert page.evaluate("document.activeElement.id") == "drawer-close"
    page.keyboard.press("/")                                           # not while... in the drawer: to the box
    if v.phone:
        page.locator("#drawer").wait_for(state="hidden")
    assert page.evaluate("document.activeElement.id") == "q"
    if not v.phone:
        page.keyboard.press("Escape")                                  # Escape from anywhere closes
        page.locator("#drawer").wait_for(state="hidden")
    card.focus()
    page.keyboard.press("Enter")
    page.locator("#drawer").wait_for(state="visible")
    page.keyboard.press("Escape")
    page.locator("#drawer").wait_for(state="hidden")
    assert page.evaluate("document.activeElement.dataset.id") == chosen  # focus back on the card


# ---------------------------------------------------------------------- paging, empty, errors
def test_load_more_and_total(view, site):
    v, page = view, view.page
    r = v.open()
    assert r.json().get("total") == 60, "the search answer has no total"
    assert page.locator("#grid .card").count() == 48
    assert "48 of 60" in page.inner_text("#status")
    more = page.locator("#load-more")
    assert more.is_visible() and "48 of 60" in more.inner_text()
    r = v.after(more.click)
    assert _query(r.url)["offset"] == ["48"]
    ids = v.card_ids()
    assert len(ids) == 60 and len(set(ids)) == 60
    assert more.is_hidden()
    assert "60 people" in page.inner_text("#status")


def test_empty_state_and_clear_filters(view, site):
    v, page = view, view.page
    names = ["personalMale", "accessoryHat", "accessorySunglasses", "lowerBodyShorts", "hairLong",
             "carryingMessengerBag", "personalLarger60"]
    combo = next(c for k in (2, 3, 4) for c in itertools.combinations(names, k)
                 if not any(set(c) <= set(r["present"]) for r in site.records.values()))
    v.open("#" + "&".join(f"where={n}%3Dyes" for n in combo))
    empty = page.locator("#empty")
    empty.wait_for(state="visible")
    assert "No people match" in empty.inner_text()
    assert page.locator("#grid .card").count() == 0
    r = v.after(lambda: v.activate(page.locator("#clear-filters")))
    assert "where" not in _query(r.url)
    assert page.locator("#grid .card").count() == 48
    assert page.locator("#filters .chip[data-state='yes']").count() == 0
    assert "where" not in v.hash_params()


def test_errors_are_readable(view, site):
    v, page = view, view.page
    v.open()
    assert page.get_attribute("#q", "maxlength") == "500"
    v.open("#q=" + "x" * 501)                                         # a link past the API's limit
    err = page.locator("#error")
    err.wait_for(state="visible")
    msg = err.inner_text()
    assert "at most 500 characters" in msg, msg
    assert "422" not in msg and "Unprocessable" not in msg
    assert page.evaluate("document.documentElement.scrollWidth") <= v.width   # a long word wraps
    v.open("#where=noSuchThing%3Dyes")
    err.wait_for(state="visible")
    assert "noSuchThing" in err.inner_text() and "400" not in err.inner_text()


# ---------------------------------------------------------------------- layout
def test_layout_fits_the_screen(view, site):
    v, page = view, view.page
    v.open("#q=" + quote("someone carrying a messenger bag and wearing sunglasses"))
    page.wait_for_function(THUMBS_LOADED)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= v.width
    header = page.locator("header#top").bounding_box()
    if v.phone:
        assert header["height"] < 0.2 * 844                           # not most of the screen
        assert page.locator("#filters").is_hidden()
        first = page.locator("#grid .card").first.bounding_box()
        assert first["y"] < 844 / 2                                   # results start on screen 1
        v.show_filters()
        assert page.evaluate("document.documentElement.scrollWidth") <= v.width
    else:
        assert page.locator("#filters").is_visible() and header["height"] < 80
    v.activate(page.locator("#grid .card").first)                      # a tap opens a card
    page.locator("#drawer").wait_for(state="visible")
    page.wait_for_function("document.querySelector('#drawer-body img.photo').naturalWidth > 0")
    assert page.evaluate("document.documentElement.scrollWidth") <= v.width
    assert page.evaluate("document.querySelector('#drawer').scrollWidth") <= v.width


# ---------------------------------------------------------------------- photo
def test_search_by_photo(view, site):
    v, page = view, view.page
    v.open("#where=carryingBackpack%3Dyes")
    src = next(p for p in site.persons if "carryingBackpack" in site.records[p.id]["present"])
    r = v.after(lambda: page.set_input_files("#photo-input", files=[{
        "name": "query.png", "mimeType": "image/png", "buffer": src.png}]),
        route="/v1/search/image", method="POST")
    assert r.status == 200, r.text()
    assert r.request.headers.get("content-type", "").startswith("multipart/form-data")
    sent = _query(r.url)
    assert sent["where"] == ["carryingBackpack=yes"]
    assert "your photo" in page.inner_text("#title")
    assert page.locator("#photo-preview").is_visible()
    ids = v.card_ids()
    assert ids and all("carryingBackpack" in site.records[i]["present"] for i in ids)
    assert v.hash_params().get("photo") == ["1"]
    v.after(lambda: page.click("#photo-clear"))                        # back to the plain view
    assert "your photo" not in page.inner_text("#title")
    assert "photo" not in v.hash_params()

    other = site.persons[7]                                            # dropped on the page
    r = v.after(lambda: page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
        document.body.dispatchEvent(new DragEvent("dragenter", { dataTransfer: dt, bubbles: true }));
        document.body.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    }""", base64.b64encode(other.png).decode()), route="/v1/search/image", method="POST")
    assert r.status == 200
    assert "your photo" in page.inner_text("#title") and page.locator("#drop-overlay").is_hidden()
    assert other.id not in v.card_ids()                                 # a stored crop leaves itself out
