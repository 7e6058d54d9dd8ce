// personlens search page. No framework: the view is a function of `S` (what the URL's hash holds:
// query, filters, camera, time, "more like this", the open person); every change goes through
// navigate() (history.pushState), and Back / reload / a shared link restore it from the URL.
"use strict";

const TOKEN_KEY = "personlens_token";
const PAGE = 48;                                   // results per request ("Load more" asks the next)
const PHONE = window.matchMedia("(max-width: 760px)");
// the "no" state of these attributes is itself a thing people ask for: personalMale=no is a woman
const NEGATED = { personalMale: "woman", personalFemale: "man", Female: "man" };
const GROUP_LABELS = { gender: "Gender", age: "Age", upper: "Upper body", lower: "Lower body",
  colour: "Colours", carrying: "Carrying", accessory: "Accessories", footwear: "Footwear",
  hair: "Hair", other: "Other" };

const EMPTY = { q: "", where: {}, cameras: [], after: "", before: "", similar: "", other: false,
                person: "", photo: false };
let S = { ...EMPTY, where: {}, cameras: [] };                  // the current view state
const app = {
  attrs: [], byName: {}, cameras: null,           // from /v1/attributes and /v1/cameras (null: no route)
  results: [], ids: new Set(), total: null, more: false,
  loadedKey: null, seq: 0, abort: null, loading: false,
  photoFile: null, photoUrl: null, records: new Map(),
  lastCard: null, opened: false, ready: null,
};
const $ = (s) => document.querySelector(s);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false || c === "") continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// ------------------------------------------------------------------ names, times
const short = (phrase) => String(phrase).replace(/^(a|an) /, "");
const phraseOf = (name) => short((app.byName[name] || {}).phrase || name);
function stateLabel(name, state) {
  if (state === "no") return NEGATED[name] || "not " + phraseOf(name);
  return phraseOf(name);
}

function pad(n) { return String(n).padStart(2, "0"); }
function localText(d, seconds = true) {     // 2024-05-12 10:31:05 (local time, unambiguous)
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`
    + (seconds ? ":" + pad(d.getSeconds()) : "");
}
function recordTime(rec) {                  // a Date, or null
  if (rec.timestamp_iso) { const d = new Date(rec.timestamp_iso); if (!isNaN(d)) return d; }
  if (typeof rec.timestamp === "number") return new Date(rec.timestamp * 1000);
  if (typeof rec.timestamp === "string") { const d = new Date(rec.timestamp); if (!isNaN(d)) return d; }
  return null;
}
function spanText(t) {                      // a video track: start-end (epoch seconds, or seconds into the video)
  if (!t || typeof t.start !== "number") return "";
  const end = typeof t.end === "number" ? t.end : t.start;
  const secs = Math.max(0, end - t.start);
  const dur = secs >= 60 ? `${Math.floor(secs / 60)} min ${Math.round(secs % 60)} s` : `${secs.toFixed(1)} s`;
  if (t.start > 1e8) {
    const a = new Date(t.start * 1000), b = new Date(end * 1000);
    const bt = a.toDateString() === b.toDateString() ? `${pad(b.getHours())}:${pad(b.getMinutes())}:${pad(b.getSeconds())}` : localText(b);
    return `${localText(a)} – ${bt} (${dur})`;
  }
  const mmss = (s) => `${Math.floor(s / 60)}:${pad(Math.floor(s % 60))}`;
  return `${mmss(t.start)} – ${mmss(end)} into the video (${dur})`;
}
// <input type=datetime-local> value (local) <-> ISO 8601 UTC for the API and the URL
function localToIso(v) {
  if (!v) return "";
  const d = new Date(v);
  return isNaN(d) ? "" : d.toISOString().replace(/\.\d{3}Z$/, "Z");
}
function isoToLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`
    + (d.getSeconds() ? ":" + pad(d.getSeconds()) : "");
}

// ------------------------------------------------------------------ auth + API
function authHeaders() {
  const t = localStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: "Bearer " + t } : {};
}
let tokenWaiters = [];
function askToken(message) {
  $("#token-error").textContent = message || "";
  $("#token-dialog").hidden = false;
  $("#token-input").focus();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}
$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("#token-input").value.trim();
  if (!t) return;
  localStorage.setItem(TOKEN_KEY, t);
  $("#token-dialog").hidden = true;
  const w = tokenWaiters; tokenWaiters = [];
  w.forEach((r) => r());
});

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

// The API's own words: {"detail": "..."}, FastAPI's [{"loc", "msg"}] (422), or {"message", "errors"}.
const FIELD_NAMES = { q: "Query", top_k: "top_k", where: "Filter", camera: "Camera", after: "After",
                      before: "Before", offset: "Offset", file: "Photo" };
function errorMessage(status, statusText, body) {
  const d = body && body.detail;
  let msg = "";
  if (typeof d === "string") msg = d;
  else if (Array.isArray(d)) {
    msg = d.map((e) => {
      const loc = (e.loc || []).filter((x) => x !== "query" && x !== "body" && x !== "path");
      const field = loc.length ? (FIELD_NAMES[loc[0]] || loc.join(".")) + ": " : "";
      return field + (e.msg || JSON.stringify(e));
    }).join("; ");
  } else if (d && typeof d === "object") {
    const errs = (d.errors || []).map((e) => `${e.filename || "#" + e.index}: ${e.error}`);
    msg = [d.message || d.error, ...errs].filter(Boolean).join(" — ");
  } else if (body && typeof body.error === "string") msg = body.error;
  if (!msg) msg = `the server answered ${status} ${statusText || ""}`.trim();
  return msg;
}

async function api(path, opts = {}) {
  for (let attempt = 0; attempt < 5; attempt++) {
    let r;
    try {
      r = await fetch(path, { ...opts, headers: { ...authHeaders(), ...(opts.headers || {}) } });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError("cannot reach the server (" + e.message + ")", 0);
    }
    if (r.status === 401) {
      const write = (opts.method || "GET") !== "GET";
      await askToken(attempt ? "That token was refused."
        : write && !authHeaders().Authorization
          ? "Searching by photo sends the image, which needs the token itself (the ?token= link's cookie only covers reading)."
          : "");
      continue;
    }
    return r;
  }
  throw new ApiError("not authorised", 401);
}
async function apiJSON(path, opts) {
  const r = await api(path, opts);
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(errorMessage(r.status, r.statusText, body), r.status);
  return body || {};
}
// Thumbnails are fetched with the token (an <img src> could not send it) and kept as blob URLs,
// the most recent THUMBS of them: toggling filters shows the same people without asking again.
const THUMBS = 600;
const thumbCache = new Map();                  // "id/size" -> Promise<blob URL | null>
function thumbURL(id, size) {
  const key = id + "/" + size;
  let p = thumbCache.get(key);
  if (p) { thumbCache.delete(key); thumbCache.set(key, p); return p; }        // most recent last
  p = api(`/v1/persons/${id}/image?size=${size}`)
    .then(async (r) => (r.ok ? URL.createObjectURL(await r.blob()) : null))
    .catch(() => null);
  p.then((u) => { if (u === null) thumbCache.delete(key); });                   // ask again later
  thumbCache.set(key, p);
  while (thumbCache.size > THUMBS) {
    const [old, oldP] = thumbCache.entries().next().value;
    thumbCache.delete(old);
    oldP.then((u) => u && URL.revokeObjectURL(u));
  }
  return p;
}
async function thumb(img, rec, size) {
  const url = await thumbURL(rec.id, size);
  if (url) img.src = url;
  else { img.alt = "(no image)"; img.classList.add("missing"); }
}

// ------------------------------------------------------------------ URL <-> state
function stateToParams(s) {
  const p = new URLSearchParams();
  if (s.q) p.set("q", s.q);
  for (const [k, v] of Object.entries(s.where)) p.append("where", `${k}=${v}`);
  for (const c of s.cameras) p.append("camera", c);
  if (s.after) p.set("after", s.after);
  if (s.before) p.set("before", s.before);
  if (s.similar) p.set("similar", s.similar);
  if (s.other) p.set("other", "1");
  if (s.photo) p.set("photo", "1");
  if (s.person) p.set("person", s.person);
  return p;
}
function paramsToState(p) {
  const s = { ...EMPTY, where: {}, cameras: [] };
  s.q = (p.get("q") || "");
  for (const w of p.getAll("where")) {
    const m = /^([^=]+)=(yes|no)$/.exec(w);
    if (m) s.where[m[1]] = m[2];
  }
  s.cameras = [...new Set(p.getAll("camera").filter(Boolean))];
  s.after = p.get("after") || "";
  s.before = p.get("before") || "";
  s.similar = /^[0-9a-f]{64}$/.test(p.get("similar") || "") ? p.get("similar") : "";
  s.other = p.get("other") === "1";
  s.photo = p.get("photo") === "1";
  s.person = /^[0-9a-f]{64}$/.test(p.get("person") || "") ? p.get("person") : "";
  return s;
}
function readURL() {
  // the hash holds the state; a plain querystring (/?q=...) is read too, for hand-made links
  let raw = location.hash.replace(/^#/, "");
  if (!raw && location.search) {
    const qs = new URLSearchParams(location.search);
    qs.delete("token");
    raw = qs.toString();
  }
  return paramsToState(new URLSearchParams(raw));
}
function urlFor(s) {
  const p = stateToParams(s).toString();
  return location.pathname + (p ? "#" + p : "");
}
// what decides the result list (everything but the open person)
function viewKey(s) {
  const w = Object.keys(s.where).sort().map((k) => k + "=" + s.where[k]).join("&");
  return JSON.stringify([s.q, w, [...s.cameras].sort().join("\n"), s.after, s.before, s.similar, s.similar ? s.other : false, s.photo]);
}

/** Go to a new state: history entry (push, or replace), controls, results, drawer. */
function navigate(patch, { replace = false, opened = false, scroll = true } = {}) {
  const next = { ...S, ...patch, where: { ...(patch.where || S.where) }, cameras: [...(patch.cameras || S.cameras)] };
  if (!(next.photo && app.photoFile)) next.photo = false;
  const url = urlFor(next);
  const hist = { pl: 1, opened };
  if (replace) history.replaceState(hist, "", url); else history.pushState(hist, "", url);
  apply(next, { scroll });
}
function apply(next, { scroll = false } = {}) {
  const reload = viewKey(next) !== app.loadedKey;
  S = next;
  syncControls();
  if (reload) loadView({ scroll });
  syncDrawer();
}
window.addEventListener("popstate", () => {
  const s = readURL();
  if (!(s.photo && app.photoFile)) s.photo = false;
  apply(s, { scroll: false });
});

// ------------------------------------------------------------------ filters
function activeCount(s = S) {
  return Object.keys(s.where).length + s.cameras.length + (s.after ? 1 : 0) + (s.before ? 1 : 0);
}
function setWhere(name, state) {
  const where = { ...S.where };
  if (state === "any") delete where[name]; else where[name] = state;
  navigate({ where });
}
function clearFilters() {
  navigate({ where: {}, cameras: [], after: "", before: "" });
}

// how an attribute held on cameras the model never saw (/v1/attributes' new_cameras): a user
// filtering on one that is near chance there should know it may be a guess on their cameras
function transferNote(a) {
  const t = a.new_cameras;
  if (!t) return "";
  const auc = Number(t.auc).toFixed(2);
  return { "near chance": ` (near chance on cameras the model never saw: AUC ${auc})`,
           "weak": ` (weaker on cameras the model never saw: AUC ${auc})` }[t.rating] || "";
}
function chipFor(a) {
  const chip = el("button", { type: "button", class: "chip", "data-name": a.name, "data-state": "any",
                              "data-group": a.group, "data-transfer": a.new_cameras ? a.new_cameras.rating : "",
                              title: `${a.name}: click for yes, again for no, again for any${transferNote(a)}` });
  chip.addEventListener("click", () => {
    const next = { any: "yes", yes: "no", no: "any" }[chip.dataset.state];
    setWhere(a.name, next);
    announce(next === "any" ? `filter ${phraseOf(a.name)} off` : `filter: ${stateLabel(a.name, next)}`);
  });
  return chip;
}
function paintChip(chip) {
  const name = chip.dataset.name;
  const state = S.where[name] || "any";
  chip.dataset.state = state;
  chip.setAttribute("aria-pressed", state === "any" ? "false" : "true");
  const words = { any: "any", yes: "yes", no: "no" }[state];
  const neg = state === "no" && NEGATED[name] ? ` (${NEGATED[name]})` : "";
  const a = app.byName[name];
  const unsure = a && a.new_cameras && a.new_cameras.rating === "near chance" ? " (unreliable on new cameras)" : "";
  chip.setAttribute("aria-label", `${phraseOf(name)}${unsure}: ${words}${neg}`);
  chip.replaceChildren(el("span", { class: "mark", "aria-hidden": "true" }, { any: "", yes: "✓", no: "✕" }[state]),
                       stateLabel(name, state));
}

async function loadAttributes() {
  const data = await apiJSON("/v1/attributes");
  app.attrs = data.attributes || [];
  app.byName = Object.fromEntries(app.attrs.map((a) => [a.name, a]));
  const groups = new Map();
  for (const a of app.attrs) {
    if (!groups.has(a.group)) groups.set(a.group, []);
    groups.get(a.group).push(a);
  }
  const box = $("#attr-groups");
  box.replaceChildren();
  for (const [group, attrs] of groups) {
    const chips = el("div", { class: "chips", role: "group", "aria-label": GROUP_LABELS[group] || group },
                     attrs.map(chipFor));
    box.append(el("details", { class: "group", "data-group": group, open: true },
                  el("summary", {}, GROUP_LABELS[group] || group, el("span", { class: "n" })), chips));
  }
}

async function loadCameras() {
  let r;
  try { r = await api("/v1/cameras"); } catch (e) { return; }
  if (r.status === 404 || r.status === 405) { app.cameras = null; return; }   // no such route here
  const body = await r.json().catch(() => null);
  if (!r.ok || !body || !Array.isArray(body.cameras)) { app.cameras = null; return; }
  app.cameras = body.cameras;
}

function renderCameras() {
  const facet = $("#camera-facet");
  const list = app.cameras ? [...app.cameras] : [];
  for (const name of S.cameras)           // asked for by the URL but not (or no longer) listed
    if (!list.some((c) => c.name === name)) list.push({ name, count: null });
  facet.hidden = !list.length;
  const box = $("#cameras");
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.camera : undefined;
  box.replaceChildren(...list.map((c) => {
    const on = S.cameras.includes(c.name);
    return el("button", { type: "button", class: "chip camera-chip", "data-camera": c.name,
                          "aria-pressed": on ? "true" : "false",
                          "aria-label": `camera ${c.name}${c.count != null ? `, ${c.count} people` : ""}`,
                          onclick: () => navigate({ cameras: on ? S.cameras.filter((x) => x !== c.name) : [...S.cameras, c.name] }) },
              el("span", { class: "mark", "aria-hidden": "true" }, on ? "✓" : ""), c.name,
              c.count != null ? [" ", el("span", { class: "count" }, c.count)] : "");
  }));
  if (focused !== undefined) {          // keyboard users stay on the chip they pressed
    const again = [...box.children].find((b) => b.dataset.camera === focused);
    if (again) again.focus();
  }
  // the footage's time span, as a hint for the time inputs
  const firsts = list.map((c) => c.first_iso || (c.first ? new Date(c.first * 1000).toISOString() : null)).filter(Boolean).sort();
  const lasts = list.map((c) => c.last_iso || (c.last ? new Date(c.last * 1000).toISOString() : null)).filter(Boolean).sort();
  $("#time-range").textContent = firsts.length && lasts.length
    ? `footage from ${localText(new Date(firsts[0]), false)} to ${localText(new Date(lasts[lasts.length - 1]), false)}` : "";
}

function syncControls() {
  // the box shows the state's query, but a chip pressed while typing keeps what is typed
  if (document.activeElement !== $("#q") || $("#q").dataset.shown !== S.q) $("#q").value = S.q;
  $("#q").dataset.shown = S.q;
  document.querySelectorAll("#attr-groups .chip").forEach(paintChip);
  document.querySelectorAll("details.group").forEach((d) => {
    const n = [...d.querySelectorAll(".chip")].filter((c) => c.dataset.state !== "any").length;
    d.querySelector("summary .n").textContent = n ? `· ${n}` : "";
  });
  renderCameras();
  $("#after").value = isoToLocal(S.after);
  $("#before").value = isoToLocal(S.before);
  const n = activeCount();
  $("#filters-toggle").replaceChildren("Filters", n ? el("span", { class: "count" }, n) : "");
  $("#filters-toggle").setAttribute("aria-label", n ? `Filters, ${n} active` : "Filters");
  $("#clear-all").hidden = !n;
  $("#other-cameras").checked = S.other;
  renderActive();
}

function renderActive() {
  const pills = [];
  const pill = (label, cls, onremove) => el("span", { class: "pill " + cls }, label,
    el("button", { type: "button", "aria-label": `remove filter ${label}`, title: "remove", onclick: () => {
      onremove();
      const next = $("#active button");
      (next || $("#results-title")).focus({ preventScroll: true });
    } }, "×"));
  for (const [name, st] of Object.entries(S.where))
    pills.push(pill(stateLabel(name, st), st, () => setWhere(name, "any")));
  for (const c of S.cameras) pills.push(pill(`camera ${c}`, "", () => navigate({ cameras: S.cameras.filter((x) => x !== c) })));
  if (S.after) pills.push(pill(`after ${localText(new Date(S.after), false)}`, "", () => navigate({ after: "" })));
  if (S.before) pills.push(pill(`before ${localText(new Date(S.before), false)}`, "", () => navigate({ before: "" })));
  $("#active").replaceChildren(...pills);
}

function setFiltersOpen(open) {
  document.body.classList.toggle("filters-open", open);
  $("#filters-toggle").setAttribute("aria-expanded", String(open));
}

// ------------------------------------------------------------------ results
function filterParams(p = new URLSearchParams()) {
  for (const [k, v] of Object.entries(S.where)) p.append("where", `${k}=${v}`);
  for (const c of S.cameras) p.append("camera", c);
  if (S.after) p.set("after", S.after);
  if (S.before) p.set("before", S.before);
  return p;
}
// the filters again on the client, for answers (similar, photo) whose route may not apply them all
function keep(rec) {
  if (S.cameras.length && !S.cameras.includes(rec.camera)) return false;
  if (S.after || S.before) {
    const d = recordTime(rec);
    if (!d) return false;
    if (S.after && d < new Date(S.after)) return false;
    if (S.before && d >= new Date(S.before)) return false;       // "before" is exclusive
  }
  return true;
}

function announce(text) { $("#status").textContent = text; }

function describeView() {
  if (S.similar) {
    const who = S.similar.slice(0, 8);
    return `People who look like ${who}` + (S.other ? " (other cameras only)" : "");
  }
  if (S.photo) return "People who look like your photo";
  return S.q ? `Results for "${S.q.length > 80 ? S.q.slice(0, 80) + "…" : S.q}"` : "People";
}

async function fetchPage(offset) {
  const signal = app.abort.signal;
  if (S.similar) {
    // no offset here: ask for more and keep the tail
    const p = filterParams();
    p.set("top_k", String(Math.min(500, offset + PAGE)));
    if (!app.records.has(S.similar)) {          // opened from a link: the person's camera decides
      try { app.records.set(S.similar, await apiJSON(`/v1/persons/${S.similar}`, { signal })); }
      catch (e) { if (e.name === "AbortError") throw e; }
    }
    const src = app.records.get(S.similar);
    if (!src || src.camera) p.set("camera_centring", "true");
    p.set("other_cameras", S.other ? "true" : "false");
    let data;
    try {
      data = await apiJSON(`/v1/persons/${S.similar}/similar?` + p.toString(), { signal });
    } catch (e) {
      if (e.status !== 409 || !p.has("camera_centring")) throw e;   // no cameras stored: plain re-ID
      p.delete("camera_centring");
      data = await apiJSON(`/v1/persons/${S.similar}/similar?` + p.toString(), { signal });
    }
    const raw = data.results || [];
    let results = raw.filter(keep);
    if (S.other && src && src.camera) results = results.filter((r) => r.camera !== src.camera);
    // the whole longer list: the cards already shown are skipped by id
    return { results, total: null, more: raw.length >= offset + PAGE && offset + PAGE < 500 };
  }
  if (S.photo && app.photoFile) {
    const p = filterParams();
    p.set("top_k", String(Math.min(500, offset + PAGE)));
    const form = new FormData();
    form.append("file", app.photoFile, app.photoFile.name || "photo");
    const data = await apiJSON("/v1/search/image?" + p.toString(), { method: "POST", body: form, signal });
    const raw = data.results || [];
    return { results: raw.filter(keep), total: typeof data.total === "number" ? data.total : null,
             more: raw.length >= offset + PAGE && offset + PAGE < 500 };
  }
  const p = filterParams();
  if (S.q) p.set("q", S.q);
  p.set("top_k", String(PAGE));
  if (offset) p.set("offset", String(offset));
  const data = await apiJSON("/v1/search?" + p.toString(), { signal });
  const results = data.results || [];
  const total = typeof data.total === "number" ? data.total : null;
  return { results, total, more: total !== null ? offset + results.length < total : results.length >= PAGE };
}

async function loadView({ scroll = false } = {}) {
  if (app.abort) app.abort.abort();
  app.abort = new AbortController();
  const seq = ++app.seq;
  app.loadedKey = viewKey(S);
  setLoading(true);
  announce(S.similar ? "finding similar people…" : "searching…");
  $("#title").textContent = describeView();
  $("#back-to-search").hidden = !S.similar;
  $("#photo-query").hidden = !S.photo;
  try {
    const page = await fetchPage(0);
    await app.ready;                           // phrases for the cards (asked for in parallel)
    if (seq !== app.seq) return;
    hideError();
    app.results = []; app.ids = new Set();
    renderResults(page, false);
    // new results from the top; but not while a phone's filters are open above them
    if (scroll && !(PHONE.matches && document.body.classList.contains("filters-open"))) window.scrollTo({ top: 0 });
  } catch (e) {
    if (e.name === "AbortError" || seq !== app.seq) return;
    app.results = []; app.ids = new Set();
    clearGrid();
    app.loadedKey = null;                      // the same view again retries
    showError(e.message);
    announce("");
    $("#load-more").hidden = true;
  } finally {
    if (seq === app.seq) setLoading(false);
  }
}

async function loadMore() {
  const seq = app.seq;
  const btn = $("#load-more");
  btn.disabled = true;
  btn.textContent = "Loading…";
  setLoading(true);
  try {
    const page = await fetchPage(app.results.length);
    if (seq !== app.seq) return;
    hideError();
    const before = app.results.length;
    renderResults(page, true);
    // keyboard users: go on from the first new card
    const first = $("#grid").children[before];
    if (first && document.activeElement === btn) first.focus();
  } catch (e) {
    if (e.name !== "AbortError" && seq === app.seq) showError(e.message);
  } finally {
    if (seq === app.seq) {
      btn.disabled = false;
      paintLoadMore();
      setLoading(false);
    }
  }
}

function setLoading(on) {
  app.loading = on;
  $("#results").setAttribute("aria-busy", String(on));
}
function showError(msg) { const e = $("#error"); e.textContent = msg; e.hidden = false; }
function hideError() { $("#error").hidden = true; $("#error").textContent = ""; }

function clearGrid() {
  $("#grid").replaceChildren();
}

function renderResults(page, append) {
  if (!append) clearGrid();
  const fresh = page.results.filter((r) => r && r.id && !app.ids.has(r.id));
  for (const r of fresh) { app.ids.add(r.id); app.results.push(r); app.records.set(r.id, r); }
  app.total = page.total;
  app.more = page.more && (append ? fresh.length > 0 : true);
  const grid = $("#grid");
  if (!app.results.length) grid.append(emptyState());
  for (const rec of fresh) grid.append(card(rec));
  paintLoadMore();
  markSelected();
}

function paintLoadMore() {
  const n = app.results.length;
  const total = app.total;
  const btn = $("#load-more");
  btn.hidden = !app.more || !n;
  btn.textContent = total !== null ? `Load more (${n} of ${total})` : "Load more";
  const what = total !== null ? (n < total ? `${n} of ${total} people` : `${total} ${total === 1 ? "person" : "people"}`)
                              : `${n} ${n === 1 ? "person" : "people"} shown`;
  announce(what);
  $("#status").dataset.total = total !== null ? String(total) : "";
}

function emptyState() {
  const n = activeCount();
  const kids = [];
  if (n) {
    kids.push(el("p", {}, "No people match these filters."),
              el("button", { type: "button", id: "clear-filters", onclick: clearFilters }, "Clear filters"));
  } else if (S.similar) kids.push(el("p", {}, "Nobody else looks like this person" + (S.other ? " on other cameras." : ".")));
  else kids.push(el("p", {}, "No people stored yet: add crops with POST /v1/persons, or index footage with personlens index."));
  return el("div", { class: "empty", id: "empty" }, kids);
}

function presentText(rec, n = 3) {
  const out = [];
  const present = rec.present || [];
  const attrs = rec.attributes || {};
  for (const [name, neg] of Object.entries(NEGATED)) {       // gender first, both ways
    if (name in attrs) { out.push(present.includes(name) ? phraseOf(name) : neg); break; }
  }
  const top = (rec.top_attributes && rec.top_attributes.length ? rec.top_attributes : present);
  for (const name of top) if (!(name in NEGATED) && !out.includes(phraseOf(name))) out.push(phraseOf(name));
  return out.slice(0, n).join(", ");
}

function card(rec) {
  const d = recordTime(rec);
  const when = rec.track && typeof rec.track.start === "number" ? spanText(rec.track) : (d ? localText(d) : "");
  const img = el("img", { alt: "", decoding: "async" });
  const label = [`person ${rec.id.slice(0, 8)}`, rec.camera ? `camera ${rec.camera}` : "no camera",
                 when || "no time", presentText(rec)].filter(Boolean).join(", ");
  const a = el("a", { class: "card", href: urlFor({ ...S, person: rec.id }), "data-id": rec.id, "aria-label": label },
    el("div", { class: "thumb" }, img),
    el("div", { class: "meta" },
      el("div", { class: "line1" },
        el("span", { class: "cam" + (rec.camera ? "" : " none"), title: "camera" }, rec.camera || "no camera"),
        typeof rec.score === "number" ? el("span", { class: "score", title: "score" }, rec.score.toFixed(3)) : ""),
      el("time", { class: "when" + (when ? "" : " none"), datetime: d ? d.toISOString() : null,
                   title: d ? d.toISOString() : null }, when || "no time"),
      el("div", { class: "attrs" }, presentText(rec) || "(no attributes present)"),
      rec.description ? el("div", { class: "desc" }, rec.description) : ""));
  a.addEventListener("click", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button) return;     // a new tab: let the link be
    ev.preventDefault();
    app.lastCard = rec.id;
    openPerson(rec.id);
  });
  thumb(img, rec, 96);
  return a;
}

function markSelected() {
  document.querySelectorAll(".card.selected").forEach((c) => c.classList.remove("selected"));
  if (S.person) {
    const c = document.querySelector(`.card[data-id="${S.person}"]`);
    if (c) c.classList.add("selected");
  }
}

// ------------------------------------------------------------------ drawer
function openPerson(id) {
  // a drawer already open is replaced in place; a new one is a history entry (Back closes it)
  if (S.person && history.state && history.state.opened) navigate({ person: id }, { replace: true, opened: true });
  else navigate({ person: id }, { opened: true });
}
function closeDrawer() {
  if (!S.person) return;
  if (history.state && history.state.opened) history.back();     // popstate closes it
  else navigate({ person: "" }, { replace: true });
}

async function syncDrawer() {
  const drawer = $("#drawer");
  markSelected();
  if (!S.person) {
    if (!drawer.hidden) {
      drawer.hidden = true;
      document.body.classList.remove("drawer-open");
      setBackgroundInert(false);
      const c = app.lastCard && document.querySelector(`.card[data-id="${app.lastCard}"]`);
      if (c && (document.activeElement === document.body || drawer.contains(document.activeElement) || !document.activeElement)) c.focus();
    }
    drawer.dataset.id = "";
    return;
  }
  if (drawer.dataset.id === S.person && !drawer.hidden) return;
  const id = S.person;
  drawer.dataset.id = id;
  let rec = app.records.get(id);
  drawer.hidden = false;
  document.body.classList.add("drawer-open");
  setBackgroundInert(PHONE.matches);
  $("#drawer-title").textContent = `Person ${id.slice(0, 8)}`;
  if (!rec) {
    $("#drawer-body").replaceChildren(el("p", { class: "hint" }, "loading…"));
    try { rec = await apiJSON(`/v1/persons/${id}`); app.records.set(id, rec); }
    catch (e) {
      if (S.person !== id) return;
      $("#drawer-body").replaceChildren(el("p", { class: "error" }, "This person cannot be shown: " + e.message));
      return;
    }
    if (S.person !== id) return;
  }
  await app.ready;                             // attribute groups and phrases
  if (S.person !== id) return;
  renderDrawer(rec);
  if (!drawer.contains(document.activeElement)) $("#drawer-close").focus({ preventScroll: true });
}

function setBackgroundInert(on) {
  for (const sel of ["header#top", "#layout"]) {
    const e = $(sel);
    if (on) e.setAttribute("inert", ""); else e.removeAttribute("inert");
  }
}
PHONE.addEventListener("change", () => {
  setBackgroundInert(PHONE.matches && !$("#drawer").hidden);
  if (!PHONE.matches) setFiltersOpen(false);
});

function renderDrawer(rec) {
  const img = el("img", { class: "photo", alt: `person ${rec.id.slice(0, 8)}` });
  const d = recordTime(rec);
  const facts = [["camera", rec.camera || "unknown"], ["time", d ? localText(d) : "unknown"]];
  if (d) facts.push(["UTC", d.toISOString().replace(/\.000Z$/, "Z")]);
  if (rec.track) {
    const span = spanText(rec.track);
    if (span) facts.push(["track", span]);
    if (rec.track.frames) facts.push(["frames", rec.track.frames]);
    if (rec.track.video) facts.push(["video", String(rec.track.video).split("/").pop()]);
  }
  if (rec.track_id !== null && rec.track_id !== undefined) facts.push(["track id", rec.track_id]);
  if (typeof rec.score === "number") facts.push(["score", `${rec.score.toFixed(3)}` + (rec.rank ? ` (rank ${rec.rank})` : "")]);
  const present = new Set(rec.present || []);
  const probs = rec.attributes || {};
  const groups = new Map();
  const order = app.attrs.length ? app.attrs.map((a) => a.name) : Object.keys(probs);
  for (const name of order) {
    if (!(name in probs)) continue;
    const g = (app.byName[name] || {}).group || "other";
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(name);
  }
  const sections = [];
  for (const [g, names] of groups) {
    names.sort((a, b) => probs[b] - probs[a]);
    sections.push(el("h3", {}, GROUP_LABELS[g] || g), el("table", {}, names.map((name) => {
      const p = Number(probs[name]);
      const yes = present.has(name);
      const label = !yes && NEGATED[name] ? `${phraseOf(name)} (no: ${NEGATED[name]})` : phraseOf(name);
      return el("tr", { class: yes ? "present" : "absent" },
        el("td", {}, (yes ? "✓ " : "") + label),
        el("td", { class: "b" }, el("div", { class: "bar", style: `width:${Math.round(p * 100)}%` })),
        el("td", { class: "p" }, p.toFixed(2)));
    })));
  }
  const unc = rec.track && rec.track.uncertain && rec.track.uncertain.length
    ? el("p", { class: "hint" }, "uncertain over the track: " + rec.track.uncertain.map(phraseOf).join(", ")) : "";
  $("#drawer-body").replaceChildren(
    img,
    el("dl", {}, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])),
    rec.description ? el("p", { class: "desc" }, rec.description) : "",
    unc,
    ...sections,
    el("div", { class: "id" }, rec.id));
  $("#other-cameras").disabled = !rec.camera;
  $("#other-cameras").parentElement.title = rec.camera ? "" : "this person's camera is not known";
  thumb(img, rec, 256);
}

function moreLikeThis() {
  const id = S.person;
  if (!id) return;
  const other = $("#other-cameras").checked && !$("#other-cameras").disabled;
  // on a phone the full-screen sheet would hide the new results: close it
  const keepOpen = !PHONE.matches;
  if (!keepOpen) setFiltersOpen(false);
  navigate({ similar: id, other, q: S.q, photo: false, person: keepOpen ? id : "" });
  window.scrollTo({ top: 0 });
  if (!keepOpen) $("#results-title").focus({ preventScroll: true });
}
$("#more-like-this").addEventListener("click", moreLikeThis);
$("#other-cameras").addEventListener("change", () => {
  if (S.similar && S.similar === S.person) navigate({ other: $("#other-cameras").checked });
});
$("#drawer-close").addEventListener("click", closeDrawer);

// ------------------------------------------------------------------ photo search
function photoSearch(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) { showError(`${file.name} is not an image`); return; }
  app.photoFile = file;
  if (app.photoUrl) URL.revokeObjectURL(app.photoUrl);
  app.photoUrl = URL.createObjectURL(file);
  $("#photo-preview").src = app.photoUrl;
  app.loadedKey = null;                      // a new photo is a new view even when the state reads the same
  navigate({ photo: true, similar: "", person: "" });
}
$("#photo-button").addEventListener("click", () => $("#photo-input").click());
$("#photo-input").addEventListener("change", (ev) => {
  const f = ev.target.files && ev.target.files[0];
  ev.target.value = "";
  photoSearch(f);
});
$("#photo-clear").addEventListener("click", () => navigate({ photo: false }));
let dragDepth = 0;
const hasFiles = (ev) => ev.dataTransfer && [...(ev.dataTransfer.types || [])].includes("Files");
window.addEventListener("dragenter", (ev) => { if (hasFiles(ev)) { dragDepth++; $("#drop-overlay").hidden = false; } });
window.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("#drop-overlay").hidden = true; } });
window.addEventListener("dragover", (ev) => { if (hasFiles(ev)) ev.preventDefault(); });
window.addEventListener("drop", (ev) => {
  if (!hasFiles(ev)) return;
  ev.preventDefault();
  dragDepth = 0; $("#drop-overlay").hidden = true;
  const f = [...ev.dataTransfer.files].find((x) => !x.type || x.type.startsWith("image/"));
  if (f) photoSearch(f); else showError("drop an image file (JPEG, PNG, …)");
});

// ------------------------------------------------------------------ controls, keys
$("#search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = $("#q").value.trim();
  navigate({ q, similar: "", photo: false, person: "" });
  if (PHONE.matches) setFiltersOpen(false);
});
$("#home").addEventListener("click", (ev) => { ev.preventDefault(); navigate({ ...EMPTY, where: {}, cameras: [] }); });
$("#back-to-search").addEventListener("click", () => navigate({ similar: "", other: false }));
$("#clear-all").addEventListener("click", clearFilters);
$("#filters-toggle").addEventListener("click", () => setFiltersOpen(!document.body.classList.contains("filters-open")));
$("#filters-done").addEventListener("click", () => {
  setFiltersOpen(false);
  $("#results-title").focus({ preventScroll: true });
  $("#results").scrollIntoView({ block: "start" });
});
for (const id of ["after", "before"]) {
  $("#" + id).addEventListener("change", (ev) => {
    const iso = localToIso(ev.target.value);
    if (iso !== S[id]) navigate({ [id]: iso });
  });
}
$("#load-more").addEventListener("click", loadMore);

document.addEventListener("keydown", (ev) => {
  if (!$("#token-dialog").hidden) return;
  const t = ev.target;
  const typing = t && (t.isContentEditable || /^(TEXTAREA|SELECT)$/.test(t.tagName)
    || (t.tagName === "INPUT" && !/^(checkbox|radio|button|submit|file)$/.test(t.type)));
  if (ev.key === "/" && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
    ev.preventDefault();
    if (PHONE.matches && !$("#drawer").hidden) { setBackgroundInert(false); closeDrawer(); }
    $("#q").focus();
    $("#q").select();
  } else if (ev.key === "Escape") {
    if (!$("#drawer").hidden) { ev.preventDefault(); closeDrawer(); }
    else if (document.body.classList.contains("filters-open")) { setFiltersOpen(false); $("#filters-toggle").focus(); }
  }
});

// ------------------------------------------------------------------ start
(async () => {
  const s = readURL();
  s.photo = false;                           // a photo is not in the URL: a reload forgets it
  history.replaceState({ pl: 1, opened: false }, "", urlFor(s));
  // the attributes (chips, phrases), the cameras and the first results are asked for at once
  app.ready = Promise.all([loadAttributes(), loadCameras()]).catch((e) => showError(e.message));
  apply(s, { scroll: false });
  await app.ready;
  syncControls();
})();
