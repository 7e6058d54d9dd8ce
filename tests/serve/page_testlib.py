"""Data and helpers for the search page's browser tests and ``scripts/page_screenshots.py``.

* ``PagePipeline``: ``serve_testlib.FakePipeline`` with more attributes (several groups) whose
  probabilities and description come from the drawn figure (looked up by the crop's SHA-256,
  which is the record id), and re-ID embeddings shared by the same person on several cameras.
* ``people()``: 60 synthetic person crops on 3 cameras over two days (drawn with PIL, no real
  people), ``seed(url)`` stores them through ``POST /v1/persons`` (JSON, per-crop camera and time).
* ``launch(playwright)``: Debian's chromium (``PERSONLENS_CHROMIUM``, default /usr/bin/chromium).
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import numpy as np
from PIL import Image, ImageDraw
from serve_testlib import TOKEN, FakePipeline, _unit, auth

from personlens.models.transfer import TransferReport

CHROMIUM = os.environ.get("PERSONLENS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        "--disable-dev-shm-usage", "--font-render-hinting=none"]

ATTRS = ["personalMale", "personalLess30", "personalLarger60", "accessoryHat", "accessorySunglasses",
         "carryingBackpack", "carryingMessengerBag", "upperBodyBlack", "upperBodyRed", "upperBodyBlue",
         "lowerBodyJeans", "lowerBodyShorts", "footwearSneaker", "hairLong"]
CAMERAS = ["door", "lobby", "yard"]
START = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
N_PEOPLE = 60
WIDTHS = {1366: {"width": 1366, "height": 860}, 390: {"width": 390, "height": 844}}

_UPPER = {"upperBodyBlack": (40, 40, 46), "upperBodyRed": (190, 40, 45), "upperBodyBlue": (45, 85, 185)}
_OTHER_UPPER = [(225, 225, 215), (95, 140, 90), (230, 180, 60)]
_SKIN = [(241, 194, 160), (198, 134, 96), (141, 85, 54), (224, 172, 140)]
_HAIR = [(30, 25, 20), (110, 70, 35), (200, 170, 100), (140, 140, 140)]


@dataclass
class Person:
    who: int                       # identity: the same person can be seen on several cameras
    camera: str
    time: datetime
    has: set = field(default_factory=set)
    skin: tuple = (224, 172, 140)
    hair: tuple = (30, 25, 20)
    upper: tuple = (40, 40, 46)
    png: bytes = b""
    id: str = ""
    description: str = ""

    @property
    def timestamp(self) -> float:
        return self.time.timestamp()


def _describe(has: set) -> str:
    who = "A man" if "personalMale" in has else "A woman"
    if "personalLarger60" in has:
        who += " over 60"
    elif "personalLess30" in has:
        who += " under 30"
    bits = []
    top = next((n for n in _UPPER if n in has), None)
    if top:
        bits.append(f"wearing a {top[len('upperBody'):].lower()} top")
    bits.append("in shorts" if "lowerBodyShorts" in has else "in jeans" if "lowerBodyJeans" in has else "")
    if "accessoryHat" in has:
        bits.append("with a hat")
    if "accessorySunglasses" in has:
        bits.append("with sunglasses")
    if "carryingBackpack" in has:
        bits.append("carrying a backpack")
    elif "carryingMessengerBag" in has:
        bits.append("carrying a messenger bag")
    return who + " " + ", ".join(b for b in bits if b) + "."


def draw(p: Person, size=(96, 240)) -> bytes:
    """A simple standing figure (PNG) showing the person's attributes."""
    w, h = size
    rng = random.Random(p.who * 7919 + CAMERAS.index(p.camera))
    bg = {"door": (196, 200, 206), "lobby": (214, 204, 186), "yard": (176, 196, 170)}[p.camera]
    img = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(img)
    for y in range(h // 2, h, 6):                           # floor
        d.line([(0, y), (w, y)], fill=tuple(max(0, c - 18) for c in bg))
    cx = w // 2 + rng.randint(-6, 6)
    lower = (40, 60, 110) if "lowerBodyJeans" in p.has else (70, 70, 75)
    shorts = "lowerBodyShorts" in p.has
    # legs
    d.rectangle([cx - 15, 130, cx - 3, 210], fill=p.skin if shorts else lower)
    d.rectangle([cx + 3, 130, cx + 15, 210], fill=p.skin if shorts else lower)
    if shorts:
        d.rectangle([cx - 16, 126, cx + 16, 160], fill=lower)
    shoe = (245, 245, 245) if "footwearSneaker" in p.has else (35, 30, 28)
    d.rectangle([cx - 17, 208, cx - 2, 218], fill=shoe)
    d.rectangle([cx + 2, 208, cx + 17, 218], fill=shoe)
    # backpack / bag behind the torso
    if "carryingBackpack" in p.has:
        d.rounded_rectangle([cx + 12, 62, cx + 30, 118], 5, fill=(60, 52, 45))
    # torso and arms
    d.rounded_rectangle([cx - 20, 56, cx + 20, 134], 8, fill=p.upper)
    d.rectangle([cx - 27, 60, cx - 19, 122], fill=p.upper)
    d.rectangle([cx + 19, 60, cx + 27, 122], fill=p.upper)
    d.ellipse([cx - 28, 118, cx - 18, 128], fill=p.skin)
    d.ellipse([cx + 18, 118, cx + 28, 128], fill=p.skin)
    if "carryingMessengerBag" in p.has:
        d.line([(cx - 18, 58), (cx + 22, 112)], fill=(90, 60, 30), width=4)
        d.rectangle([cx + 14, 104, cx + 34, 124], fill=(110, 75, 40))
    # head, hair, hat, glasses
    if "hairLong" in p.has:
        d.rounded_rectangle([cx - 16, 16, cx + 16, 74], 10, fill=p.hair)
    d.ellipse([cx - 13, 18, cx + 13, 52], fill=p.skin)
    if "accessoryHat" in p.has:
        d.rectangle([cx - 18, 18, cx + 18, 24], fill=(150, 30, 30))
        d.rounded_rectangle([cx - 12, 4, cx + 12, 22], 4, fill=(150, 30, 30))
    else:
        d.chord([cx - 14, 14, cx + 14, 40], 180, 360, fill=p.hair)
    if "accessorySunglasses" in p.has:
        d.rectangle([cx - 10, 30, cx + 10, 36], fill=(10, 10, 10))
    arr = np.asarray(img).astype(np.int16)
    noise = np.random.default_rng(p.who * 31 + len(p.camera)).integers(-6, 7, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def people(n: int = N_PEOPLE) -> list[Person]:
    """``n`` crops: 3 cameras, times from 2024-05-01 08:00 UTC every 47 minutes (two days);
    every 5th one is an earlier person seen again on another camera."""
    rng = random.Random(14)
    out: list[Person] = []
    for i in range(n):
        if i % 5 == 4 and i > 5:
            src = out[i - 4]
            p = Person(src.who, CAMERAS[(CAMERAS.index(src.camera) + 1) % 3], START + timedelta(minutes=47 * i),
                       set(src.has), src.skin, src.hair, src.upper)
        else:
            has = {a for a, prob in [("personalMale", .55), ("personalLess30", .35), ("accessoryHat", .2),
                                     ("accessorySunglasses", .15), ("carryingBackpack", .35),
                                     ("carryingMessengerBag", .15), ("lowerBodyJeans", .45),
                                     ("lowerBodyShorts", .2), ("footwearSneaker", .5),
                                     ("hairLong", .3)] if rng.random() < prob}
            if "personalLess30" not in has and rng.random() < .3:
                has.add("personalLarger60")
            if "personalMale" not in has and rng.random() < .6:
                has.add("hairLong")
            top = rng.choice([*list(_UPPER), None, None])
            upper = _UPPER[top] if top else rng.choice(_OTHER_UPPER)
            if top:
                has.add(top)
            p = Person(i, CAMERAS[i % 3], START + timedelta(minutes=47 * i), has,
                       rng.choice(_SKIN), rng.choice(_HAIR), upper)
        p.png = draw(p)
        p.id = hashlib.sha256(p.png).hexdigest()
        p.description = _describe(p.has)
        out.append(p)
    return out


class PagePipeline(FakePipeline):
    """``FakePipeline`` whose attributes, description and re-ID identity come from ``people()``
    (by crop id); unknown crops (a searched photo) get FakePipeline's values."""

    names = ATTRS
    # how the attributes held on cameras never seen (/v1/attributes; the page marks sunglasses)
    predictor = SimpleNamespace(transfer=TransferReport.from_dict({"attributes": {
        "personalMale": {"auc_new_cameras": 0.75, "positives": 300},
        "accessorySunglasses": {"auc_new_cameras": 0.46, "positives": 40},
        "footwearSneaker": {"auc_new_cameras": 0.62, "positives": 100}}}))

    def __init__(self, persons: list[Person] | None = None, **kw):
        super().__init__(**kw)
        self.by_id = {p.id: p for p in (persons if persons is not None else people())}

    def process(self, images, sources, *, ids=None, **kw):
        records = super().process(images, sources, ids=ids, **kw)
        for r in records:
            p = self.by_id.get(r.id)
            if p is None:
                r.attributes = {a: r.attributes.get(a, 0.1) for a in ATTRS}
            else:
                rng = random.Random(r.id)
                r.attributes = {a: round(rng.uniform(.7, .97) if a in p.has else rng.uniform(.02, .3), 4)
                                for a in ATTRS}
                # the same identity on another camera: a close re-ID embedding
                v = _unit(str(p.who).encode(), self.reid_dim) + 0.25 * _unit(r.id.encode(), self.reid_dim)
                r.reid_embedding = (v / np.linalg.norm(v)).astype(np.float32)
                r.description = p.description
            r.present = [a for a, v in r.attributes.items() if v >= 0.5]
        return records


def seed(url: str, persons: list[Person], token: str = TOKEN) -> list[dict]:
    """Store ``persons`` through the API (JSON, base64, per-crop camera and ISO time)."""
    body = {"images": [{"data": base64.b64encode(p.png).decode(), "camera": p.camera,
                        "timestamp": p.time.isoformat().replace("+00:00", "Z"), "filename": f"p{i}.png"}
                       for i, p in enumerate(persons)]}
    r = httpx.post(url + "/v1/persons", json=body, headers=auth(token), timeout=120)
    r.raise_for_status()
    records = r.json()["records"]
    assert [x["id"] for x in records] == [p.id for p in persons]
    return records


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
