// demo.js - the page at /: a live feed of statuses, a map, forms for the API, and the
// social graph (follow buttons on each status's author, the home stream, the home timeline).
//
// Statuses are user input: everything they carry reaches the page through
// textContent and setAttribute on elements made with createElement; no HTML
// is ever parsed from data.
import { LongPoll } from "../longpoll.mjs";

const SVG_NS = "http://www.w3.org/2000/svg";
const STORE_IDENTIFIER = "longpoll.identifier";
const STORE_USER = "longpoll.user";
const STORE_SESSION = "longpoll.session"; // sessionStorage: this tab's stream, key and cursor
const FEED_LIMIT = 200;          // statuses kept in the feed
const BLIP_LIFETIME_MS = 120000; // a blip fades over this long (CSS), then goes
const STATS_EVERY_MS = 2000;

const $ = (selector) => document.querySelector(selector);
const feed = $("#feed");
const feedEmpty = $("#feed-empty");
const blipLayer = $("#blips");
const map = $("#map");
const connection = $("#connection");
const streamForm = $("#stream-form");
const signupForm = $("#signup-form");
const postForm = $("#post-form");
const deleteForm = $("#delete-form");
const homeList = $("#home-list");
const HOME_SHOWN = 20;           // statuses of the home timeline shown
const FOLLOWING_PAGES = 25;      // pages of 200 read to know whom the user follows (the server's limit is 5,000)

// -- small DOM helpers (no HTML strings anywhere) ----------------------------------

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, String(value));
  }
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function say(form, text, kind = "info") {
  const out = form.querySelector(".result");
  out.textContent = text;
  out.dataset.kind = kind;
}

// -- storage ------------------------------------------------------------------------------

function load(name) {
  try { return localStorage.getItem(name); } catch (_) { return null; }
}

function save(name, value) {
  try {
    if (value === null) localStorage.removeItem(name);
    else localStorage.setItem(name, value);
  } catch (_) { /* private mode: fine, it lasts for this page */ }
}

function randomIdentifier() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function identifier() {
  let id = load(STORE_IDENTIFIER);
  if (!id || !/^[A-Za-z0-9_.-]{1,64}$/.test(id)) {
    id = randomIdentifier();
    save(STORE_IDENTIFIER, id);
  }
  return id;
}

function currentUser() {
  try {
    const user = JSON.parse(load(STORE_USER) || "null");
    return user && typeof user.token === "string" && typeof user.login === "string" ? user : null;
  } catch (_) {
    return null;
  }
}

// -- HTTP -------------------------------------------------------------------------------

async function api(method, path, body, token) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = "Bearer " + token;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch (error) {
    return { status: 0, body: { error: "network", message: "the server cannot be reached" } };
  }
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  return { status: response.status, body: data || {} };
}

// -- the feed and the map ---------------------------------------------------------------------

const shown = new Map(); // status id -> {li, status}
const blips = new Map(); // status id -> {node, timer}

function parseLocation(text) {
  if (typeof text !== "string") return null;
  const parts = text.split(",");
  if (parts.length !== 2) return null;
  const [lat, lon] = parts.map((p) => Number(p.trim()));
  if (!Number.isFinite(lat) || !Number.isFinite(lon) || Math.abs(lat) > 90 || Math.abs(lon) > 180) return null;
  return { lat, lon };
}

function statusId(value) {
  const id = Number(value);
  return Number.isSafeInteger(id) && id >= 0 ? id : null;
}

function isMine(status) {
  const user = currentUser();
  if (!user) return false;
  if (user.id !== undefined && status.uid !== undefined && String(status.uid) === String(user.id)) return true;
  return typeof status.login === "string" && status.login.toLowerCase() === user.login.toLowerCase();
}

// -- the social graph ------------------------------------------------------------------

const following = new Set(); // lower-case logins the active user follows

function followButton(login) {
  const button = el("button", { type: "button", class: "follow", "data-login": login });
  showFollowing(button);
  button.addEventListener("click", () => toggleFollow(login));
  return button;
}

function showFollowing(button) {
  const yes = following.has(button.dataset.login.toLowerCase());
  button.dataset.following = String(yes);
  button.textContent = yes ? "Following" : "Follow";
  button.title = (yes ? "Unfollow @" : "Follow @") + button.dataset.login;
}

async function toggleFollow(login) {
  const user = currentUser();
  if (!user) {
    say(postForm, "Sign up first: following needs a user.", "error");
    return;
  }
  const unfollowing = following.has(login.toLowerCase());
  const { status, body } = await api(unfollowing ? "DELETE" : "POST", `/users/${encodeURIComponent(login)}/follow`,
    undefined, user.token);
  if (status === 200) {
    if (body.following) following.add(login.toLowerCase());
    else following.delete(login.toLowerCase());
    refreshOwnership();
    refreshHome();
  } else if (status === 401) {
    tokenRefused(postForm);
  } else {
    say(postForm, body.message || `Following failed (HTTP ${status}).`, "error");
  }
}

async function loadFollowing() {
  following.clear();
  const user = currentUser();
  let cursor = null;
  for (let page = 0; user && page < FOLLOWING_PAGES; page++) {
    const query = new URLSearchParams({ count: 200, ...(cursor ? { cursor } : {}) });
    const { status, body } = await api("GET", `/users/${encodeURIComponent(user.login)}/following?${query}`);
    if (status !== 200 || !Array.isArray(body.users)) break;
    for (const other of body.users) if (typeof other.login === "string") following.add(other.login.toLowerCase());
    cursor = body.next;
    if (!cursor) break;
  }
  refreshOwnership();
}

async function refreshHome() {
  const user = currentUser();
  homeList.replaceChildren();
  $("#home-empty").hidden = Boolean(user);
  $("#home-note").textContent = user ? "@" + user.login : "";
  if (!user) return;
  const { status, body } = await api("GET", `/home?count=${HOME_SHOWN}`, undefined, user.token);
  if (status !== 200 || !Array.isArray(body.statuses)) {
    $("#home-note").textContent = status === 401 ? "token refused" : `HTTP ${status}`;
    return;
  }
  for (const item of body.statuses) {
    const li = el("li", { "data-id": statusId(item.id) });
    li.appendChild(el("span", { class: "login" }, "@" + String(item.login ?? "?")));
    li.appendChild(document.createTextNode(String(item.message ?? "")));
    homeList.appendChild(li);
  }
  $("#home-empty").hidden = body.statuses.length > 0;
  if (!body.statuses.length) $("#home-empty").textContent = "Nothing yet: follow people with the buttons in the feed.";
}

$("#home-refresh").addEventListener("click", refreshHome);

function deleteButton(id) {
  const button = el("button", { type: "button", class: "delete", "data-id": id, title: "Delete this status" }, "Delete");
  button.addEventListener("click", () => deleteStatus(id, deleteForm));
  return button;
}

function renderStatus(status) {
  const id = statusId(status.id);
  const li = el("li", { class: "status fresh", "data-id": id });
  const head = el("div", { class: "head" });
  if (typeof status.name === "string" && status.name) head.appendChild(el("span", { class: "name" }, status.name));
  head.appendChild(el("span", { class: "login" }, "@" + String(status.login ?? "?")));
  if (currentUser() && typeof status.login === "string" && !isMine(status)) head.appendChild(followButton(status.login));
  const posted = Number(status.posted);
  if (Number.isFinite(posted)) {
    const when = new Date(posted * 1000);
    head.appendChild(el("time", { datetime: when.toISOString(), title: when.toLocaleString() }, when.toLocaleTimeString()));
  }
  const where = parseLocation(status.location);
  if (where) {
    head.appendChild(el("span", { class: "where", title: "latitude, longitude" }, `${where.lat}, ${where.lon}`));
  }
  head.appendChild(el("span", { class: "sid" }, "#" + id));
  if (isMine(status)) head.appendChild(deleteButton(id));
  li.appendChild(head);
  li.appendChild(el("p", { class: "message" }, String(status.message ?? "")));
  li.addEventListener("mouseenter", () => blips.get(id)?.node.classList.add("hot"));
  li.addEventListener("mouseleave", () => blips.get(id)?.node.classList.remove("hot"));
  li.addEventListener("animationend", () => li.classList.remove("fresh"), { once: true });
  return li;
}

function addStatus(status) {
  const id = statusId(status.id);
  if (id === null || shown.has(id)) return;
  const li = renderStatus(status);
  // newest (highest id) first
  let before = feed.firstElementChild;
  while (before && Number(before.dataset.id) > id) before = before.nextElementSibling;
  feed.insertBefore(li, before);
  shown.set(id, { li, status });
  while (feed.children.length > FEED_LIMIT) {
    const last = feed.lastElementChild;
    shown.delete(Number(last.dataset.id));
    last.remove();
  }
  const where = parseLocation(status.location);
  if (where) addBlip(id, where, status);
  feedEmpty.hidden = true;
}

function removeStatus(id) {
  const entry = shown.get(id);
  if (entry) {
    entry.li.remove();
    shown.delete(id);
  }
  removeBlip(id);
  feedEmpty.hidden = shown.size > 0;
}

const coord = (v) => String(Math.round(v * 1000) / 1000);

function addBlip(id, { lat, lon }, status) {
  removeBlip(id);
  const node = svgEl("g", { class: "blip", "data-id": id, transform: `translate(${coord(lon + 180)} ${coord(90 - lat)})` });
  const title = svgEl("title");
  title.textContent = `@${status.login ?? "?"}: ${status.message ?? ""}`;
  node.appendChild(title);
  node.appendChild(svgEl("circle", { class: "ring", r: 3 }));
  node.appendChild(svgEl("circle", { class: "dot", r: 1.6 }));
  node.style.animationDuration = BLIP_LIFETIME_MS + "ms";
  blipLayer.appendChild(node);
  const timer = setTimeout(() => removeBlip(id), BLIP_LIFETIME_MS);
  blips.set(id, { node, timer });
}

function removeBlip(id) {
  const blip = blips.get(id);
  if (!blip) return;
  clearTimeout(blip.timer);
  blip.node.remove();
  blips.delete(id);
}

function clearFeed() {
  for (const id of [...shown.keys()]) removeStatus(id);
  for (const id of [...blips.keys()]) removeBlip(id);
  feedEmpty.hidden = false;
}

function refreshOwnership() {
  const user = currentUser();
  for (const [id, { li, status }] of shown) {
    const existing = li.querySelector("button.delete");
    const mine = isMine(status);
    if (mine && !existing) li.querySelector(".head").appendChild(deleteButton(id));
    if (!mine && existing) existing.remove();
    const follow = li.querySelector("button.follow");
    if (user && !mine && typeof status.login === "string") {
      if (follow) showFollowing(follow);
      else li.querySelector(".login").after(followButton(status.login));
    } else if (follow) {
      follow.remove();
    }
  }
}

function onItems(items) {
  for (const item of items) {
    if (!item || typeof item !== "object") continue;
    const id = statusId(item.id);
    if (id === null) continue;
    if (item.deleted) removeStatus(id);
    else addStatus(item);
  }
}

// -- the stream ---------------------------------------------------------------------------

let poller = null;

function showConnection(state, text) {
  connection.dataset.state = state;
  connection.dataset.transport = poller ? poller.transportInUse : "";
  connection.textContent = text;
}

/** How the batches come: Server-Sent Events where the browser and the stream allow, else long-polls. */
function live(key) {
  const how = poller && poller.transportInUse === "sse" ? "live over SSE" : "live over long-poll";
  return key === undefined ? how : `${how} · session ${shortKey(key)}`;
}

function shortKey(key) {
  return key ? key.slice(0, 6) + "…" : "new";
}

function onState(state, info) {
  switch (state) {
    case "polling":
      showConnection("polling", poller && poller.key ? live(poller.key) : live());
      break;
    case "waiting":
      if (info.reason === "retry_ms") {
        showConnection("waiting", `server busy · polling again in ${(info.delay / 1000).toFixed(1)} s`);
      } else {
        const why = info.error ? `${info.error.status ? "HTTP " + info.error.status : info.error.error}: ${info.error.message}` : "error";
        showConnection("waiting", `reconnecting in ${(info.delay / 1000).toFixed(1)} s (attempt ${info.attempt}) · ${why}`);
      }
      break;
    case "expired":
      showConnection("expired", "session expired · starting a new one");
      break;
    case "restarted":
      showConnection("polling", `${live()} · new session ${shortKey(info.key)} (statuses in between were missed)`);
      break;
    case "paused":
      showConnection("paused", "paused while this tab is hidden");
      break;
    case "resumed":
      showConnection("polling", "resuming");
      break;
    case "done":
      showConnection("done", "the stream has ended");
      break;
    case "stopped":
      showConnection("stopped", info.error ? `stopped · ${info.error.message}` : "stopped");
      break;
    default:
      showConnection(state, state);
  }
}

function describeStream(spec) {
  if (spec.kind === "sample") return `sample ${spec.params.percent}% · ${spec.params.identifier}`;
  if (spec.kind === "home") return `home of @${spec.user.login} · ${spec.params.identifier}`;
  const parts = ["track", "follow", "locations"].filter((n) => spec.params[n]).map((n) => `${n}=${spec.params[n]}`);
  return `filter ${parts.join(" ")} · ${spec.params.identifier}`;
}

// A reload within the server's idle timeout resumes this tab's session, so
// statuses posted meanwhile still arrive (sessionStorage is per tab: two tabs
// never share a key).
function streamId(spec) {
  return JSON.stringify([spec.kind, spec.params, spec.user ? spec.user.login : null]);
}

function savedSession(spec) {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE_SESSION) || "null");
    return saved && saved.stream === streamId(spec) && typeof saved.key === "string" ? saved : null;
  } catch (_) {
    return null;
  }
}

function rememberSession(spec, lp) {
  try {
    if (lp.key) sessionStorage.setItem(STORE_SESSION, JSON.stringify({ stream: streamId(spec), key: lp.key, cursor: lp.cursor }));
    else sessionStorage.removeItem(STORE_SESSION);
  } catch (_) { /* storage unavailable: no resuming */ }
}

/**
 * A stream token for the user's home stream: EventSource cannot send the Authorization header, so the
 * stream takes this in its URL instead. It reads only this user's home stream and expires within minutes
 * (SECURITY.md); the user's own token never goes in a URL.
 */
async function streamToken(user) {
  const { status, body } = await api("POST", "/home/stream-tokens", undefined, user.token);
  if (status === 200 && typeof body.token === "string") return { token: body.token };
  return { error: { status, message: body.message || `HTTP ${status}` } };
}

let streams = 0; // startStream calls: a slower one that was overtaken starts nothing

async function startStream(spec, { resume = false } = {}) {
  const generation = ++streams;
  if (poller) poller.stop();
  poller = null;
  clearFeed();
  $("#stream-label").textContent = describeStream(spec);
  const saved = resume ? savedSession(spec) : null;
  const url = { sample: "/statuses/sample.json", filter: "/statuses/filter.json", home: "/statuses/home.json" };
  const params = { ...spec.params }; // GET, filters included, so that EventSource can stream it
  if (spec.kind === "home") {
    const issued = await streamToken(spec.user);
    if (generation !== streams) return;
    if (issued.error) {
      if (issued.error.status === 401) tokenRefused(streamForm);
      else say(streamForm, `No stream token: ${issued.error.message}`, "error");
      showConnection("stopped", "stopped · no stream token");
      return;
    }
    params.stream_token = issued.token;
  }
  let renewable = true; // an unexpected 401 gets one fresh token until a batch comes through
  const current = new LongPoll(url[spec.kind], {
    params,
    transport: "auto", // SSE where EventSource exists and the stream answers it; long-polls otherwise
    pauseWhenHidden: spec.pause,
    quickStart: true, // learn the session key at once, so an early stop or reload does not orphan it
    key: saved ? saved.key : null,
    cursor: saved ? saved.cursor : null,
    onItems: (items) => {
      if (poller !== current) return;
      renewable = true;
      onItems(items);
      rememberSession(spec, current);
      if (connection.dataset.state === "polling") showConnection("polling", live(current.key));
    },
    onState: (state, info) => {
      if (poller !== current) return;
      rememberSession(spec, current);
      onState(state, info);
    },
    onError: async (error) => {
      if (poller !== current) return;
      // The home stream's token expired (a reconnect after the server ended a stream, a tab woken from
      // sleep): a fresh one, and the same session, whose key and cursor are kept, so nothing is missed.
      if (spec.kind === "home" && error.status === 401 && (error.error === "stream_token_expired" || renewable)) {
        renewable = false;
        const issued = await streamToken(spec.user);
        if (poller !== current) return;
        if (issued.token) {
          current.params.stream_token = issued.token;
          current.start();
          return;
        }
        error = issued.error;
      }
      say(streamForm, `The server refused this stream: ${error.message}`, "error");
    },
  });
  poller = current;
  currentSpec = spec;
  current.start();
}

let currentSpec = null;
addEventListener("pagehide", () => { if (poller && currentSpec) rememberSession(currentSpec, poller); });

function streamSpec() {
  const f = streamForm.elements;
  const kind = ["filter", "home"].includes(f.kind.value) ? f.kind.value : "sample";
  const params = { identifier: f.identifier.value.trim() };
  if (kind === "sample") {
    params.percent = Number(f.percent.value) || 100;
  } else if (kind === "home") {
    params.backfill = Number(f.backfill.value) || 0;
    return { kind, params, pause: f.pause.checked, user: currentUser() };
  } else {
    for (const name of ["track", "follow", "locations"]) {
      const value = f[name].value.trim();
      if (value) params[name] = value;
    }
  }
  return { kind, params, pause: f.pause.checked };
}

function showKind() {
  const kind = streamForm.elements.kind.value;
  for (const fieldset of streamForm.querySelectorAll("fieldset[data-kind]")) {
    fieldset.hidden = fieldset.dataset.kind !== kind;
  }
}

streamForm.elements.kind.addEventListener("change", showKind);
streamForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const spec = streamSpec();
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(spec.params.identifier)) {
    say(streamForm, "The identifier is 1-64 characters of A-Z a-z 0-9 _ . -", "error");
    return;
  }
  if (spec.kind === "sample" && !(spec.params.percent >= 1 && spec.params.percent <= 100)) {
    say(streamForm, "Percent is 1 to 100.", "error");
    return;
  }
  if (spec.kind === "filter" && !spec.params.track && !spec.params.follow && !spec.params.locations) {
    say(streamForm, "A filter needs track, follow or locations.", "error");
    return;
  }
  if (spec.kind === "home" && !spec.user) {
    say(streamForm, "The home stream is a user's: sign up first.", "error");
    return;
  }
  if (spec.kind === "home" && !(spec.params.backfill >= 0 && spec.params.backfill <= 200)) {
    say(streamForm, "Backfill is 0 to 200.", "error");
    return;
  }
  save(STORE_IDENTIFIER, spec.params.identifier);
  say(streamForm, "Stream restarted: " + describeStream(spec), "ok");
  startStream(spec);
});

// -- users, posting, deleting -------------------------------------------------------------------

function showUser() {
  const user = currentUser();
  const line = $("#active-user");
  line.replaceChildren();
  if (user) {
    line.appendChild(document.createTextNode("Active user: "));
    line.appendChild(el("strong", { class: "login" }, "@" + user.login));
    line.classList.remove("muted");
  } else {
    line.textContent = "No active user: sign up to post.";
    line.classList.add("muted");
  }
  $("#signout").hidden = !user;
  refreshOwnership();
  refreshHome();
}

signupForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = signupForm.elements;
  const body = { login: f.login.value.trim() };
  if (f.name.value.trim()) body.name = f.name.value.trim();
  say(signupForm, "Signing up…");
  const { status, body: answer } = await api("POST", "/users", body);
  if (status === 201) {
    save(STORE_USER, JSON.stringify({ id: answer.id, login: answer.login, token: answer.token }));
    say(signupForm, `Welcome, @${answer.login}. Your token is kept in this browser.`, "ok");
    signupForm.reset();
    showUser();
    loadFollowing();
  } else if (status === 409) {
    say(signupForm, `The login ${body.login} is taken.`, "error");
  } else {
    say(signupForm, answer.message || `Sign-up failed (HTTP ${status}).`, "error");
  }
});

$("#signout").addEventListener("click", () => {
  save(STORE_USER, null);
  following.clear();
  say(signupForm, "Token forgotten.", "ok");
  showUser();
});

function tokenRefused(form) {
  say(form, "This server does not know your token (it may have restarted): sign up again.", "error");
}

postForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const user = currentUser();
  if (!user) {
    say(postForm, "Sign up first: posting needs a user.", "error");
    return;
  }
  const f = postForm.elements;
  const body = { message: f.message.value };
  const location = f.location.value.trim();
  if (location) {
    if (!parseLocation(location)) {
      say(postForm, 'The location is "lat,lon", latitude -90..90 and longitude -180..180.', "error");
      return;
    }
    body.location = location;
  }
  say(postForm, "Posting…");
  const { status, body: answer } = await api("POST", "/statuses", body, user.token);
  if (status === 201) {
    say(postForm, `Posted #${answer.id}.`, "ok");
    f.message.value = "";
    refreshHome();
  } else if (status === 401) {
    tokenRefused(postForm);
  } else {
    say(postForm, answer.message || `Posting failed (HTTP ${status}).`, "error");
  }
});

const PLACES = [
  [51.51, -0.13], [48.86, 2.35], [40.71, -74.01], [37.77, -122.42], [35.68, 139.69], [-33.87, 151.21],
  [-23.55, -46.63], [19.43, -99.13], [55.76, 37.62], [28.61, 77.21], [-1.29, 36.82], [30.04, 31.24],
  [1.35, 103.82], [-34.6, -58.38], [64.15, -21.94], [39.9, 116.41], [6.52, 3.38], [-36.85, 174.76],
  [49.28, -123.12], [41.01, 28.98], [-33.92, 18.42], [61.22, -149.9], [13.76, 100.5], [52.52, 13.4],
];

$("#random-location").addEventListener("click", () => {
  const [lat, lon] = PLACES[Math.floor(Math.random() * PLACES.length)];
  const jitter = () => (Math.random() - 0.5) * 2;
  const clamp = (v, m) => Math.max(-m, Math.min(m, v));
  postForm.elements.location.value = `${clamp(lat + jitter(), 90).toFixed(2)},${clamp(lon + jitter(), 180).toFixed(2)}`;
});

map.addEventListener("click", (event) => {
  const matrix = map.getScreenCTM();
  if (!matrix) return;
  const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
  const lon = Math.max(-180, Math.min(180, point.x - 180));
  const lat = Math.max(-90, Math.min(90, 90 - point.y));
  postForm.elements.location.value = `${lat.toFixed(2)},${lon.toFixed(2)}`;
  say(postForm, "Location picked from the map.");
});

async function deleteStatus(id, form) {
  const user = currentUser();
  if (!user) {
    say(form, "Sign up first: deleting needs the author's token.", "error");
    return;
  }
  say(form, `Deleting #${id}…`);
  const { status, body: answer } = await api("DELETE", `/statuses/${id}`, undefined, user.token);
  if (status === 200) {
    say(form, `Deleted #${id}.`, "ok");
    removeStatus(id); // the stream sends the deletion too, if this status matched it
  } else if (status === 403) {
    say(form, `#${id} is not yours to delete.`, "error");
  } else if (status === 404) {
    say(form, `There is no status #${id}.`, "error");
  } else if (status === 401) {
    tokenRefused(form);
  } else {
    say(form, answer.message || `Deleting failed (HTTP ${status}).`, "error");
  }
}

deleteForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const id = statusId(deleteForm.elements.id.value);
  if (id === null || !/^\d+$/.test(deleteForm.elements.id.value.trim())) {
    say(deleteForm, "A status id is a whole number.", "error");
    return;
  }
  deleteStatus(id, deleteForm);
});

// -- /stats ---------------------------------------------------------------------------------

async function refreshStats() {
  try {
    const response = await fetch("/stats", { cache: "no-store", headers: { Accept: "application/json" } });
    const stats = await response.json();
    for (const node of document.querySelectorAll("[data-stat]")) {
      const value = stats[node.dataset.stat];
      node.textContent = typeof value === "number" ? value.toLocaleString() : "–";
    }
    $("#stats-note").textContent = stats.backend_available === false ? "backend unavailable" : "";
  } catch (_) {
    $("#stats-note").textContent = "unreachable";
  } finally {
    setTimeout(refreshStats, STATS_EVERY_MS);
  }
}

// -- start ------------------------------------------------------------------------------------

streamForm.elements.identifier.value = identifier();
streamForm.elements.kind.value = "sample";
streamForm.elements.percent.value = "100";
showKind();
showUser();
loadFollowing();
startStream(streamSpec(), { resume: true });
refreshStats();
