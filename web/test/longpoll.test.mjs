// Tests of longpoll/web/longpoll.js (through longpoll.mjs) and longpoll/web/jquery.longpoll.js.
// Run: node --test web/test/
//
// Everything is driven by fakes: a scripted server that records every request
// and answers it through a fake fetch, a fake XMLHttpRequest or a fake $.ajax
// (the three ways the clients send a poll), timers on a virtual clock, a fixed
// random(), and a fake document for page visibility. No network, no real waiting.
// The behaviour tests run once per way: LongPoll on fetch, LongPoll on
// XMLHttpRequest (a browser without fetch), and $.longPoll on $.ajax.
import { test, describe, afterEach } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

import LongPollDefault, { LongPoll, LongPollError } from "../../longpoll/web/longpoll.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const pluginPath = path.join(here, "..", "..", "longpoll", "web", "jquery.longpoll.js");

// -- fakes -------------------------------------------------------------------

/** Let pending promise callbacks run (the real event loop; the client's timers are fake). */
async function flush() {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Timers on a virtual clock: nothing fires until advance(). */
function fakeClock() {
  let now = 0;
  let seq = 0;
  const timers = new Map();
  const clock = {
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { id, fn, ms, at: now + Math.max(0, Number(ms) || 0) });
      return id;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    now: () => now,
    pending() {
      return [...timers.values()].sort((a, b) => a.at - b.at || a.id - b.id);
    },
    async advance(ms) {
      const end = now + ms;
      for (;;) {
        const next = clock.pending()[0];
        if (!next || next.at > end) break;
        now = next.at;
        timers.delete(next.id);
        next.fn();
        await flush();
      }
      now = end;
      await flush();
    },
  };
  return clock;
}

const bodyText = (body) => (body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body));
const withContentType = (headers = {}) => ({ "Content-Type": "application/json", ...headers });

function headerIn(headers, name) {
  const found = Object.keys(headers).find((own) => own.toLowerCase() === name.toLowerCase());
  return found === undefined ? null : headers[found];
}

/**
 * The server side of every fake: it records each request as a call and
 * answers from a script; with the script empty, a call stays pending until
 * the test calls respond()/fail() on it. Each way of sending fills in
 * respond() and fail() for its own calls.
 */
function fakeNet() {
  const script = [];
  let inFlight = 0;
  const net = {
    calls: [],
    maxInFlight: 0,
    inFlight: () => inFlight,
    last: () => net.calls[net.calls.length - 1],
    /** Queue scripted answers for the next requests. */
    queue: (...answers) => script.push(...answers),
    open(via, { method, url, headers, body }) {
      const parsed = new URL(url, "http://page.test");
      const call = {
        via,
        url,
        method: method || "GET",
        path: parsed.pathname,
        query: Object.fromEntries(parsed.searchParams),
        body: body === undefined || body === null ? undefined : JSON.parse(body),
        headers: headers || {},
        aborted: false,
        settled: false,
      };
      inFlight += 1;
      net.maxInFlight = Math.max(net.maxInFlight, inFlight);
      net.calls.push(call);
      return call;
    },
    /** Mark a call settled; false if it already was. */
    settle(call) {
      if (call.settled) return false;
      call.settled = true;
      inFlight -= 1;
      return true;
    },
    /** Answer a new call from the script, later, as a browser would. */
    answerFromScript(call) {
      const next = script.shift();
      if (!next) return;
      queueMicrotask(() => {
        if (next.fail) call.fail(next.fail);
        else call.respond(next.status, next.body, next.headers);
      });
    },
  };
  return net;
}

/** fetch on the fake net. honourAbort: false makes it ignore the AbortSignal, like a fetch whose abort takes its time. */
function fakeFetch(net, { honourAbort = true } = {}) {
  const fetch = (url, init = {}) => {
    const call = net.open("fetch", { method: init.method, url, headers: init.headers, body: init.body });
    call.init = init;
    const promise = new Promise((resolve, reject) => {
      call.respond = (status, body, headers) => {
        if (net.settle(call)) resolve(new Response(bodyText(body) || null, { status, headers: withContentType(headers) }));
      };
      call.fail = (error = new TypeError("fetch failed")) => {
        if (net.settle(call)) reject(error);
      };
    });
    if (init.signal) {
      init.signal.addEventListener("abort", () => {
        call.aborted = true;
        if (honourAbort) call.fail(new DOMException("This operation was aborted", "AbortError"));
      });
    }
    net.answerFromScript(call);
    return promise;
  };
  return fetch;
}

/** XMLHttpRequest on the fake net: readystatechange to 4 with the answer, or with status 0 on a network error. */
function fakeXMLHttpRequest(net) {
  return class FakeXMLHttpRequest {
    constructor() {
      this.readyState = 0;
      this.status = 0;
      this.responseText = "";
      this.requestHeaders = {};
      this.responseHeaders = {};
    }
    open(method, url, async) {
      assert.equal(async, true, "never a synchronous XMLHttpRequest");
      Object.assign(this, { method, url, readyState: 1 });
    }
    setRequestHeader(name, value) { this.requestHeaders[name] = value; }
    getResponseHeader(name) { return headerIn(this.responseHeaders, name); }
    send(body) {
      const call = net.open("xhr", { method: this.method, url: this.url, headers: this.requestHeaders, body });
      call.xhr = this;
      const finish = (status, text, headers) => {
        if (!net.settle(call)) return;
        Object.assign(this, { status, responseText: text, responseHeaders: headers, readyState: 4 });
        if (this.onreadystatechange) this.onreadystatechange();
      };
      call.respond = (status, body, headers) => finish(status, bodyText(body), withContentType(headers));
      call.fail = () => finish(0, "", {});
      this.call = call;
      net.answerFromScript(call);
    }
    abort() {
      this.call.aborted = true;
      this.call.fail();
    }
  };
}

/** A minimal jQuery Deferred: enough to see the plugin notify, resolve and reject (real jQuery runs in test_jquery.py). */
function fakeDeferred() {
  const handlers = { done: [], fail: [], progress: [] };
  let settled = null;
  const fire = (kind, context, args) => handlers[kind].forEach((fn) => fn.apply(context, args));
  const deferred = {
    notifyWith(context, args) { if (!settled) fire("progress", context, args); return deferred; },
    resolveWith(context, args) { if (!settled) { settled = ["done", context, args]; fire("done", context, args); } return deferred; },
    rejectWith(context, args) { if (!settled) { settled = ["fail", context, args]; fire("fail", context, args); } return deferred; },
    state: () => (settled ? { done: "resolved", fail: "rejected" }[settled[0]] : "pending"),
    promise: () => ({ state: deferred.state, done: deferred.done, fail: deferred.fail, progress: deferred.progress }),
  };
  for (const kind of ["done", "fail", "progress"]) {
    deferred[kind] = (fn) => {
      handlers[kind].push(fn);
      if (settled && settled[0] === kind) fn.apply(settled[1], settled[2]);
      return deferred;
    };
  }
  deferred.always = (fn) => deferred.done(fn).fail(fn);
  return deferred;
}

/** Just enough jQuery for the plugin: $(el), .each, .data, .trigger, .on, $.extend, $.each, $.Deferred, $.fn, and $.ajax on the fake net. */
function fakeJQuery(net) {
  const store = new WeakMap();
  function wrap(elements) {
    const obj = Object.create($.fn);
    obj.elements = elements;
    return obj;
  }
  function $(target) {
    if (target && target.elements) return target;
    return wrap(Array.isArray(target) ? target : [target]);
  }
  $.fn = {
    each(fn) { this.elements.forEach((el, i) => fn.call(el, i, el)); return this; },
    data(name, value) {
      const el = this.elements[0];
      if (!store.has(el)) store.set(el, {});
      if (value === undefined) return store.get(el)[name];
      for (const e of this.elements) { if (!store.has(e)) store.set(e, {}); store.get(e)[name] = value; }
      return this;
    },
    on(type, fn) { for (const el of this.elements) (el.handlers[type] ||= []).push(fn); return this; },
    trigger(type, args = []) {
      for (const el of this.elements) for (const fn of el.handlers[type] || []) fn.call(el, { type, target: el }, ...args);
      return this;
    },
  };
  $.extend = (target, ...sources) => Object.assign(target, ...sources);
  $.each = (array, fn) => { array.forEach((value, i) => fn.call(value, i, value)); return array; };
  $.Deferred = fakeDeferred;
  // $.ajax as jQuery does it: complete(jqXHR, textStatus) once, synchronously on abort().
  $.ajax = (settings) => {
    const call = net.open("ajax", { method: settings.type, url: settings.url, headers: settings.headers, body: settings.data });
    call.settings = settings;
    let responseHeaders = {};
    const jqXHR = {
      status: 0,
      responseText: undefined,
      getResponseHeader: (name) => headerIn(responseHeaders, name),
      abort() { call.aborted = true; call.fail(undefined, "abort"); },
    };
    const finish = (status, text, headers, textStatus) => {
      if (!net.settle(call)) return;
      Object.assign(jqXHR, { status, responseText: text });
      responseHeaders = headers;
      settings.complete(jqXHR, textStatus);
    };
    call.respond = (status, body, headers) =>
      finish(status, bodyText(body), withContentType(headers), status >= 200 && status < 300 ? "success" : "error");
    call.fail = (_, textStatus = "error") => finish(0, undefined, {}, textStatus);
    net.answerFromScript(call);
    return jqXHR;
  };
  return $;
}

/** Load jquery.longpoll.js afresh onto this jQuery. */
function loadPlugin($) {
  globalThis.jQuery = $;
  delete require.cache[pluginPath];
  require(pluginPath);
  return $;
}

const ok = (items = [], { key = "K1", cursor = "1", state = "ready", ...extra } = {}) =>
  ({ status: 200, body: { state, key, cursor, items, ...extra } });
const err = (status, error, extra = {}, headers = {}) =>
  ({ status, body: { error, message: `${error} happened`, ...extra }, headers });
const networkError = () => ({ fail: new TypeError("fetch failed") });

function fakeDocument(visibilityState = "visible", property = "visibilityState") {
  const listeners = new Set();
  const event = property === "visibilityState" ? "visibilitychange" : "webkitvisibilitychange";
  return {
    [property]: visibilityState,
    addEventListener(type, fn) { if (type === event) listeners.add(fn); },
    removeEventListener(type, fn) { if (type === event) listeners.delete(fn); },
    listenerCount: () => listeners.size,
    set(state) {
      this[property] = state;
      for (const fn of [...listeners]) fn({ type: event });
    },
  };
}

/** The three ways a poll is sent; each makes a poller (not started) on a fake net. */
const CLIENTS = {
  "LongPoll on fetch": (net, url, options, { honourAbort } = {}) =>
    new LongPoll(url, { fetch: fakeFetch(net, { honourAbort }), ...options }),
  "LongPoll on XMLHttpRequest": (net, url, options) =>
    new LongPoll(url, { fetch: null, XMLHttpRequest: fakeXMLHttpRequest(net), ...options }),
  "$.longPoll on $.ajax": (net, url, options) =>
    loadPlugin(fakeJQuery(net)).longPoll(url, { ...options, autoStart: false }),
};

function setupFor(client, { url = "/stream", random = 0.5, honourAbort, ...options } = {}) {
  const clock = fakeClock();
  const net = fakeNet();
  const log = { items: [], bodies: [], states: [], errors: [] };
  const lp = CLIENTS[client](net, url, {
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => random,
    document: null,
    onItems: (items, body) => { log.items.push(items); log.bodies.push(body); },
    onState: (state, info) => log.states.push([state, info]),
    onError: (error) => log.errors.push(error),
    ...options,
  }, { honourAbort });
  const stateNames = () => log.states.map(([name]) => name);
  const waits = () => log.states.filter(([name]) => name === "waiting").map(([, info]) => info);
  const lastWaiting = () => waits().at(-1);
  return { clock, net, log, lp, stateNames, waits, lastWaiting };
}

/** The next request happens exactly `delay` ms after now: not one ms sooner.
 * (Scripted answers come at once, so it may be followed by more requests.) */
async function expectNextRequestAfter(t, delay) {
  const before = t.net.calls.length;
  await t.clock.advance(delay - 1);
  assert.equal(t.net.calls.length, before, `no request before ${delay} ms`);
  await t.clock.advance(1);
  assert.ok(t.net.calls.length > before, `a request at ${delay} ms`);
}

// -- the module ----------------------------------------------------------------

describe("module", () => {
  test("longpoll.mjs re-exports the global LongPoll, as named and default export", () => {
    assert.equal(typeof LongPoll, "function");
    assert.equal(LongPoll, globalThis.LongPoll);
    assert.equal(LongPollDefault, LongPoll);
    assert.equal(LongPollError, LongPoll.LongPollError);
  });

  test("the plugin needs jQuery, not longpoll.js, and leaves window.LongPoll alone", () => {
    const saved = globalThis.LongPoll;
    try {
      delete globalThis.LongPoll;
      const $ = loadPlugin(fakeJQuery(fakeNet()));
      assert.equal(typeof $.longPoll, "function");
      assert.equal(typeof $.fn.longPoll, "function");
      assert.equal(globalThis.LongPoll, undefined);
      delete globalThis.jQuery;
      assert.throws(() => { delete require.cache[pluginPath]; require(pluginPath); }, /load jQuery/);
    } finally {
      globalThis.LongPoll = saved;
    }
  });
});

// -- the behaviour, once per way of sending ------------------------------------------

for (const client of Object.keys(CLIENTS)) {
  describe(client, () => {
    const setup = (options) => setupFor(client, options);
    const onFetch = client === "LongPoll on fetch";

    // -- key and cursor ------------------------------------------------------------------

    describe("session key and cursor", () => {
      test("the first poll has no key and no cursor; GET sends params, timeout and max in the query", async () => {
        const t = setup({ params: { identifier: "me", percent: 7 }, timeout: 12, max: 5 });
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 1);
        const call = t.net.calls[0];
        assert.equal(call.method, "GET");
        assert.equal(call.path, "/stream");
        assert.deepEqual(call.query, { identifier: "me", percent: "7", timeout: "12", max: "5" });
        assert.equal(call.body, undefined);
        assert.equal(t.lp.key, null);
        assert.equal(t.lp.cursor, null);
        assert.equal(t.lp.running, true);
      });

      test("defaults: timeout 25 and max 100", async () => {
        const t = setup();
        t.lp.start();
        await flush();
        assert.equal(t.net.calls[0].query.timeout, "25");
        assert.equal(t.net.calls[0].query.max, "100");
      });

      test("an existing query string in the URL is kept", async () => {
        const t = setup({ url: "/stream?a=1", params: { b: 2 } });
        t.lp.start();
        await flush();
        assert.deepEqual(t.net.calls[0].query, { a: "1", b: "2", timeout: "25", max: "100" });
      });

      test("key and cursor of an answer go with the next poll; the previous cursor is not sent again", async () => {
        const t = setup({ params: { identifier: "me" } });
        t.net.queue(ok(["a"], { key: "K1", cursor: "1" }), ok(["b", "c"], { key: "K1", cursor: "2" }));
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 3);
        assert.equal(t.net.calls[1].query.key, "K1");
        assert.equal(t.net.calls[1].query.cursor, "1");
        assert.equal(t.net.calls[1].query.identifier, "me", "params go with every poll");
        assert.equal(t.net.calls[2].query.key, "K1");
        assert.equal(t.net.calls[2].query.cursor, "2");
        assert.deepEqual(t.log.items, [["a"], ["b", "c"]]);
        assert.equal(t.log.bodies[1].cursor, "2", "onItems gets the whole body too");
        assert.equal(t.lp.key, "K1");
        assert.equal(t.lp.cursor, "2");
      });

      test("an empty answer keeps the cursor and calls no onItems", async () => {
        const t = setup();
        t.net.queue(ok(["a"], { cursor: "1" }), ok([], { cursor: "1" }), ok([], { cursor: "1" }));
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 4);
        for (const call of t.net.calls.slice(1)) {
          assert.equal(call.query.key, "K1");
          assert.equal(call.query.cursor, "1");
        }
        assert.deepEqual(t.log.items, [["a"]]);
      });

      test("POST sends params, key, cursor, timeout and max as a JSON body", async () => {
        const t = setup({ method: "POST", params: { identifier: "me", track: "a,b c" }, timeout: 3, max: 9 });
        t.net.queue(ok(["x"], { key: "KP", cursor: "4" }));
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 2);
        const [first, second] = t.net.calls;
        assert.equal(first.method, "POST");
        assert.deepEqual(first.query, {}, "nothing in the query string");
        assert.equal(first.headers["Content-Type"], "application/json");
        assert.deepEqual(first.body, { identifier: "me", track: "a,b c", timeout: 3, max: 9 });
        assert.deepEqual(second.body, { identifier: "me", track: "a,b c", key: "KP", cursor: "4", timeout: 3, max: 9 });
      });

      test("410 drops key and cursor, and a new session starts at once", async () => {
        const t = setup();
        t.net.queue(
          ok(["a"], { key: "OLD", cursor: "3" }),
          err(410, "expired", { state: "expired" }),
          ok(["b"], { key: "NEW", cursor: "1" }),
        );
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 4, "no waiting after 410");
        assert.equal(t.net.calls[1].query.key, "OLD");
        assert.equal("key" in t.net.calls[2].query, false, "the poll after 410 has no key");
        assert.equal("cursor" in t.net.calls[2].query, false, "... and no cursor");
        assert.equal(t.net.calls[3].query.key, "NEW");
        assert.equal(t.net.calls[3].query.cursor, "1");
        const names = t.stateNames();
        assert.ok(names.indexOf("expired") >= 0 && names.indexOf("restarted") > names.indexOf("expired"), names.join());
        assert.deepEqual(t.log.items, [["a"], ["b"]]);
        assert.equal(t.log.errors.length, 0);
      });

      test("a 410 to a poll without a key backs off instead of spinning", async () => {
        const t = setup({ random: 1 });
        t.net.queue(err(410, "expired", { state: "expired" }));
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 1);
        await expectNextRequestAfter(t, 500);
      });

      test("quickStart: a new session's first poll asks for timeout 0, later polls for the real timeout", async () => {
        const t = setup({ quickStart: true, timeout: 20 });
        t.net.queue(ok([], { key: "K", cursor: "0" }), err(410, "expired", { state: "expired" }), ok([], { key: "K2", cursor: "0" }));
        t.lp.start();
        await flush();
        assert.deepEqual(t.net.calls.map((c) => [c.query.key, c.query.timeout]),
          [[undefined, "0"], ["K", "20"], [undefined, "0"], ["K2", "20"]]);
      });

      test("without quickStart the first poll asks for the real timeout", async () => {
        const t = setup({ timeout: 20 });
        t.lp.start();
        await flush();
        assert.equal(t.net.calls[0].query.timeout, "20");
      });

      test("key and cursor options resume an existing session", async () => {
        const t = setup({ key: "SAVED", cursor: "7" });
        assert.equal(t.lp.key, "SAVED");
        t.lp.start();
        await flush();
        assert.deepEqual([t.net.calls[0].query.key, t.net.calls[0].query.cursor], ["SAVED", "7"]);
      });

      test("stop() then start() resumes the same session", async () => {
        const t = setup();
        t.net.queue(ok(["a"], { key: "K", cursor: "5" }));
        t.lp.start();
        await flush();
        t.lp.stop();
        await flush();
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 3);
        assert.equal(t.net.calls[2].query.key, "K");
        assert.equal(t.net.calls[2].query.cursor, "5");
      });
    });

    // -- backoff -------------------------------------------------------------------------

    describe("backoff", () => {
      test("grows exponentially with equal jitter and is capped at maxBackoff", async () => {
        const t = setup({ random: 0.5, minBackoff: 100, maxBackoff: 1000 });
        t.net.queue(err(503, "unavailable"), err(503, "unavailable"), err(503, "unavailable"),
          err(503, "unavailable"), err(503, "unavailable"), err(503, "unavailable"));
        t.lp.start();
        await flush();
        // equal jitter with random 0.5: 3/4 of min(maxBackoff, minBackoff * 2^(attempt-1))
        for (const [attempt, delay] of [[1, 75], [2, 150], [3, 300], [4, 600], [5, 750], [6, 750]]) {
          assert.deepEqual([t.lastWaiting().attempt, t.lastWaiting().delay], [attempt, delay]);
          await expectNextRequestAfter(t, delay);
        }
      });

      test("jitter keeps every wait within its bounds", () => {
        for (const jitter of ["equal", "full"]) {
          for (const r of [0, 0.25, 0.999999]) {
            const lp = CLIENTS[client](fakeNet(), "/x", { random: () => r, jitter, minBackoff: 500, maxBackoff: 30000 });
            for (let attempt = 1; attempt <= 12; attempt++) {
              const ceiling = Math.min(30000, 500 * 2 ** (attempt - 1));
              const floor = jitter === "equal" ? ceiling / 2 : 0;
              const wait = lp.backoff(attempt);
              assert.ok(wait >= floor && wait <= ceiling, `${jitter} r=${r} attempt ${attempt}: ${wait} in [${floor}, ${ceiling}]`);
              assert.equal(wait, floor + r * (ceiling - floor), "the random draw places it");
            }
          }
        }
      });

      test("full jitter: the wait is random() times the exponential ceiling", async () => {
        const t = setup({ random: 0.25, jitter: "full", minBackoff: 400, maxBackoff: 100000 });
        t.net.queue(networkError(), networkError(), networkError());
        t.lp.start();
        await flush();
        await expectNextRequestAfter(t, 100);
        await expectNextRequestAfter(t, 200);
        await expectNextRequestAfter(t, 400);
      });

      test("Retry-After (seconds) is the lower bound of the wait", async () => {
        const t = setup({ random: 0.5, minBackoff: 500 });
        t.net.queue(err(429, "too_many_sessions", {}, { "Retry-After": "7" }));
        t.lp.start();
        await flush();
        assert.equal(t.lastWaiting().delay, 7000);
        await expectNextRequestAfter(t, 7000);
        assert.equal("key" in t.net.last().query, false);
      });

      test("a backoff longer than Retry-After wins", async () => {
        const t = setup({ random: 0.5, minBackoff: 8000, maxBackoff: 60000 });
        t.net.queue(err(503, "backend_unavailable", {}, { "Retry-After": "2" }));
        t.lp.start();
        await flush();
        await expectNextRequestAfter(t, 6000);
      });

      test("Retry-After as an HTTP date", () => {
        assert.equal(LongPoll.parseRetryAfter("120", 0), 120);
        assert.equal(LongPoll.parseRetryAfter(new Date(30_000).toUTCString(), 0), 30);
        assert.equal(LongPoll.parseRetryAfter("soon", 0), null);
        assert.equal(LongPoll.parseRetryAfter(null, 0), null);
      });

      test("retry_ms in a 200 answer delays the next poll by that much", async () => {
        const t = setup({ random: 0.5 });
        t.net.queue(ok([], { key: "K", cursor: "0", retry_ms: 1234 }), ok(["late"], { key: "K", cursor: "1" }));
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 1);
        await expectNextRequestAfter(t, 1234);
        assert.equal(t.net.calls[1].query.key, "K");
        assert.deepEqual(t.log.items, [["late"]]);
      });

      test("the backoff starts over once the session answers again", async () => {
        const t = setup({ random: 0.5, minBackoff: 100 });
        t.net.queue(ok([], { key: "K" }), err(503, "unavailable"), err(502, "bad_gateway"), ok(["a"], { key: "K" }), networkError());
        t.lp.start();
        await flush();
        await expectNextRequestAfter(t, 75);
        await expectNextRequestAfter(t, 150);
        // the success was answered at once, then the network error: attempt 1 again
        assert.deepEqual(t.log.items, [["a"]]);
        assert.equal(t.lastWaiting().attempt, 1);
        await expectNextRequestAfter(t, 75);
      });

      test("backoff keeps growing across 410 restarts that fail again (issue 11.7)", async () => {
        // A wedged endpoint: every session answers once, then fails, then is gone.
        const t = setup({ random: 0.5, minBackoff: 100, maxBackoff: 100000 });
        t.net.queue(ok(["first"], { key: "K1" }), err(503, "unavailable"), err(410, "expired", { state: "expired" }),
          ok(["first"], { key: "K2" }), err(503, "unavailable"), err(410, "expired", { state: "expired" }),
          ok(["first"], { key: "K3" }), err(503, "unavailable"));
        t.lp.start();
        await flush();
        await expectNextRequestAfter(t, 75);
        await expectNextRequestAfter(t, 150);
        await t.clock.advance(299);
        assert.deepEqual(t.waits().map((w) => [w.attempt, w.delay]), [[1, 75], [2, 150], [3, 300]]);
        assert.equal(t.net.calls.length, 8, "the third restart's failure waits 300 ms");
        assert.deepEqual(t.net.calls.map((c) => c.query.key), [undefined, "K1", "K1", undefined, "K2", "K2", undefined, "K3"]);
      });

      test("5xx and network errors are retried with the same key and cursor", async () => {
        const t = setup({ random: 0 , minBackoff: 10, jitter: "none" });
        t.net.queue(ok(["a"], { key: "K", cursor: "2" }), err(500, "internal_server_error"), networkError(), err(503, "x"));
        t.lp.start();
        await flush();
        await t.clock.advance(10 + 20 + 40);
        assert.equal(t.net.calls.length, 5);
        for (const call of t.net.calls.slice(1)) assert.deepEqual([call.query.key, call.query.cursor], ["K", "2"]);
        assert.equal(t.log.errors.length, 0, "retried errors are not onError");
        assert.equal(t.lp.running, true);
      });

      test("a 200 that is not a batch is retried like a server error", async () => {
        const t = setup({ random: 1, minBackoff: 50 });
        t.net.queue({ status: 200, body: "<html>proxy login</html>" });
        t.lp.start();
        await flush();
        await expectNextRequestAfter(t, 50);
      });

      test("a poll with no answer within timeout + 10 s is aborted and retried", async () => {
        const t = setup({ timeout: 5, random: 1, minBackoff: 1000 });
        t.lp.start();
        await flush();
        const first = t.net.calls[0];
        await t.clock.advance(14_999);
        assert.equal(first.aborted, false);
        await t.clock.advance(1);
        assert.equal(first.aborted, true, "aborted at 15 s");
        assert.equal(t.lastWaiting().error.error, "timeout");
        await expectNextRequestAfter(t, 1000);
      });
    });

    // -- ends ------------------------------------------------------------------------------

    describe("ending", () => {
      for (const [status, code] of [[400, "bad_parameter"], [401, "unauthorized"], [403, "forbidden"], [404, "not_found"], [405, "method_not_allowed"]]) {
        test(`${status} calls onError with the JSON error and stops`, async () => {
          const t = setup();
          t.net.queue(err(status, code, status === 400 ? { param: "percent" } : {}));
          t.lp.start();
          await flush();
          await t.clock.advance(10 * 60 * 1000);
          assert.equal(t.net.calls.length, 1, "never retried");
          assert.equal(t.log.errors.length, 1);
          const error = t.log.errors[0];
          assert.ok(error instanceof Error);
          assert.equal(error.status, status);
          assert.equal(error.error, code);
          assert.equal(error.message, `${code} happened`);
          if (status === 400) assert.equal(error.param, "percent");
          assert.equal(t.lp.running, false);
          assert.equal(t.stateNames().at(-1), "stopped");
        });
      }

      test("done delivers the last items, then stops", async () => {
        const t = setup();
        t.net.queue(ok([1, 2], { cursor: "1" }), ok([3], { cursor: "2", state: "done" }));
        t.lp.start();
        await flush();
        await t.clock.advance(60_000);
        assert.equal(t.net.calls.length, 2);
        assert.deepEqual(t.log.items, [[1, 2], [3]]);
        assert.equal(t.lp.running, false);
        assert.equal(t.stateNames().at(-1), "done");
        assert.equal(t.log.errors.length, 0);
      });

      test("stop() aborts the poll in flight and cancels nothing else", async () => {
        const t = setup();
        t.lp.start();
        await flush();
        const call = t.net.calls[0];
        assert.equal(call.aborted, false);
        t.lp.stop();
        assert.equal(call.aborted, true);
        await t.clock.advance(60_000);
        assert.equal(t.net.calls.length, 1);
        assert.equal(t.lp.running, false);
        assert.equal(t.stateNames().at(-1), "stopped");
        assert.equal(t.log.errors.length, 0, "an abort is not an error");
      });

      test("stop() during a backoff cancels the retry", async () => {
        const t = setup();
        t.net.queue(networkError());
        t.lp.start();
        await flush();
        assert.equal(t.stateNames().at(-1), "waiting");
        t.lp.stop();
        await t.clock.advance(60 * 60 * 1000);
        assert.equal(t.net.calls.length, 1);
      });

      test("stop() from onItems stops after that batch", async () => {
        const t = setup({ onItems: () => t.lp.stop() });
        t.net.queue(ok(["a"]));
        t.lp.start();
        await flush();
        await t.clock.advance(60_000);
        assert.equal(t.net.calls.length, 1);
      });

      test("a throwing onItems does not stop polling", async () => {
        const errors = [];
        const original = globalThis.reportError;
        globalThis.reportError = (e) => errors.push(e);
        try {
          const t = setup({ onItems: () => { throw new Error("app bug"); } });
          t.net.queue(ok(["a"]), ok(["b"], { cursor: "2" }));
          t.lp.start();
          await flush();
          assert.equal(t.net.calls.length, 3);
          assert.equal(errors.length, 2);
        } finally {
          globalThis.reportError = original;
        }
      });
    });

    // -- one poll at a time ------------------------------------------------------------------

    describe("never two polls in flight", () => {
      test("start() while running is a no-op", async () => {
        const t = setup();
        t.lp.start();
        t.lp.start();
        await flush();
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 1);
        assert.equal(t.net.maxInFlight, 1);
      });

      test("start() during a backoff neither polls early nor resets the backoff", async () => {
        const t = setup({ random: 0.5, minBackoff: 100 });
        t.net.queue(networkError(), networkError());
        t.lp.start();
        await flush();
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 1);
        await expectNextRequestAfter(t, 75);
        assert.equal(t.lastWaiting().attempt, 2);
        t.lp.start();
        await expectNextRequestAfter(t, 150);
      });

      test("start() while paused on a hidden page does not poll", async () => {
        const document = fakeDocument("visible");
        const t = setup({ pauseWhenHidden: true, document });
        t.lp.start();
        await flush();
        document.set("hidden");
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 1);
        assert.equal(t.lp.paused, true);
      });

      test("the next poll is sent only after the previous one settled", async () => {
        const t = setup();
        t.lp.start();
        await flush();
        await t.clock.advance(1000);
        assert.equal(t.net.calls.length, 1);
        t.net.calls[0].respond(200, { state: "ready", key: "K", cursor: "1", items: [1] });
        await flush();
        assert.equal(t.net.calls.length, 2);
        assert.equal(t.net.maxInFlight, 1);
      });

      if (onFetch) test("stop() and start() during a poll whose fetch ignores the abort: the new poll waits for the old", async () => {
        const t = setup({ honourAbort: false });
        t.net.queue(ok(["a"], { key: "K", cursor: "1" }));
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 2);
        const old = t.net.calls[1];
        t.lp.stop();
        t.lp.start();
        t.lp.stop();
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 2, "no second request while the old one is unsettled");
        old.respond(200, { state: "ready", key: "K", cursor: "2", items: ["from the stopped poll"] });
        await flush();
        assert.equal(t.net.calls.length, 3);
        assert.equal(t.net.maxInFlight, 1);
        assert.deepEqual(t.log.items, [["a"]], "the answer of a stopped poll is not taken");
        assert.equal(t.net.calls[2].query.cursor, "1", "so its batch is asked for again");
      });

      test("stop() and start() during a poll: the abort settles it, then the next poll goes", async () => {
        const t = setup();
        t.lp.start();
        await flush();
        t.lp.stop();
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 2);
        assert.equal(t.net.calls[0].aborted, true);
        assert.equal(t.net.maxInFlight, 1);
      });

      test("a long random mix of start, stop, answers, failures and time keeps one poll at most", async () => {
        for (const honourAbort of onFetch ? [true, false] : [true]) {
          const t = setup({ honourAbort, minBackoff: 10, maxBackoff: 100 });
          let seed = 42;
          const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
          let cursor = 0;
          for (let step = 0; step < 400; step++) {
            const r = rand();
            const open = t.net.calls.filter((c) => !c.settled);
            if (r < 0.15) t.lp.start();
            else if (r < 0.25) t.lp.stop();
            else if (r < 0.55 && open.length) open[0].respond(200, { state: "ready", key: "K", cursor: String(++cursor), items: [cursor] });
            else if (r < 0.65 && open.length) open[0].respond(503, { error: "x", message: "x" });
            else if (r < 0.7 && open.length) open[0].fail();
            else await t.clock.advance(Math.floor(rand() * 200));
            await flush();
            assert.ok(t.net.inFlight() <= 1, `step ${step}: ${t.net.inFlight()} in flight`);
          }
          assert.equal(t.net.maxInFlight, 1);
          assert.ok(t.net.calls.length > 50, `it did poll (${t.net.calls.length})`);
        }
      });
    });

    // -- issue 11.7 ---------------------------------------------------------------------------

    describe("a failing generator and bad options (issue 11.7)", () => {
      test("500 generator_failed is terminal: onError once, no new session, the first item shown once", async () => {
        // The server would answer 410 to the retry, and a new session would fail the same way.
        const t = setup({ random: 0.5, minBackoff: 100 });
        t.net.queue(ok(["first"], { key: "K1" }), err(500, "generator_failed"),
          err(410, "expired", { state: "expired" }), ok(["first"], { key: "K2" }));
        t.lp.start();
        await flush();
        await t.clock.advance(10 * 60 * 1000);
        assert.equal(t.net.calls.length, 2, "never retried");
        assert.deepEqual(t.log.items, [["first"]]);
        assert.equal(t.log.errors.length, 1);
        assert.equal(t.log.errors[0].error, "generator_failed");
        assert.equal(t.log.errors[0].status, 500);
        assert.equal(t.lp.running, false);
        assert.equal(t.lp.key, null, "the server ended that session");
        assert.deepEqual(t.stateNames().slice(-1), ["stopped"]);
        assert.equal(t.log.states.at(-1)[1].reason, "error");
      });

      test("other 500s are still retried, with the same key and cursor", async () => {
        const t = setup({ random: 0.5, minBackoff: 100 });
        t.net.queue(ok(["a"], { key: "K", cursor: "3" }), err(500, "internal_server_error"), ok(["b"], { key: "K", cursor: "4" }));
        t.lp.start();
        await flush();
        await expectNextRequestAfter(t, 75);
        assert.deepEqual([t.net.calls[2].query.key, t.net.calls[2].query.cursor], ["K", "3"]);
        assert.deepEqual(t.log.items, [["a"], ["b"]]);
        assert.equal(t.log.errors.length, 0);
      });

      for (const [options, pattern] of [
        [{ timeout: "abc" }, /timeout must be a number of seconds, 0 or more, not "abc"/],
        [{ timeout: NaN }, /timeout must be/],
        [{ timeout: -1 }, /timeout must be/],
        [{ timeout: "" }, /timeout must be/],
        [{ timeout: null }, /timeout must be/],
        [{ max: "ten" }, /max must be a whole number, 1 or more, not "ten"/],
        [{ max: 0 }, /max must be/],
        [{ max: 2.5 }, /max must be/],
        [{ max: {} }, /max must be/],
        [{ minBackoff: "soon" }, /minBackoff must be/],
        [{ maxBackoff: Infinity }, /maxBackoff must be/],
        [{ onItems: "render" }, /onItems must be a function/],
      ]) {
        const [[name, value]] = Object.entries(options);
        test(`${name}: ${typeof value === "string" ? JSON.stringify(value) : String(value)} is refused when the poller is made, before any request`, () => {
          const net = fakeNet();
          assert.throws(() => CLIENTS[client](net, "/s", options), (error) => error instanceof TypeError && pattern.test(error.message));
          assert.equal(net.calls.length, 0);
        });
      }

      test("numbers given as strings are taken as numbers", async () => {
        const t = setup({ timeout: "20", max: "7" });
        t.lp.start();
        await flush();
        assert.deepEqual([t.net.calls[0].query.timeout, t.net.calls[0].query.max], ["20", "7"]);
      });
    });

    // -- page visibility ------------------------------------------------------------------------

    describe("pauseWhenHidden", () => {
      test("hiding the page aborts the poll and pauses; showing it resumes with key and cursor", async () => {
        const document = fakeDocument("visible");
        const t = setup({ pauseWhenHidden: true, document });
        t.net.queue(ok(["a"], { key: "K", cursor: "3" }));
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 2);
        document.set("hidden");
        assert.equal(t.net.calls[1].aborted, true);
        assert.equal(t.lp.paused, true);
        assert.equal(t.lp.running, true);
        assert.equal(t.stateNames().at(-1), "paused");
        await t.clock.advance(10 * 60 * 1000);
        assert.equal(t.net.calls.length, 2, "no polls while hidden");
        document.set("visible");
        await flush();
        assert.equal(t.net.calls.length, 3);
        assert.deepEqual([t.net.calls[2].query.key, t.net.calls[2].query.cursor], ["K", "3"]);
        assert.equal(t.lp.paused, false);
        assert.equal(t.net.maxInFlight, 1);
      });

      test("starting while hidden waits for the page to show", async () => {
        const document = fakeDocument("hidden");
        const t = setup({ pauseWhenHidden: true, document });
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 0);
        assert.equal(t.stateNames().at(-1), "paused");
        document.set("visible");
        await flush();
        assert.equal(t.net.calls.length, 1);
      });

      test("hiding during a backoff cancels the retry until visible", async () => {
        const document = fakeDocument("visible");
        const t = setup({ pauseWhenHidden: true, document });
        t.net.queue(networkError());
        t.lp.start();
        await flush();
        document.set("hidden");
        await t.clock.advance(10 * 60 * 1000);
        assert.equal(t.net.calls.length, 1);
        document.set("visible");
        await flush();
        assert.equal(t.net.calls.length, 2);
      });

      test("without pauseWhenHidden a hidden page keeps polling", async () => {
        const document = fakeDocument("visible");
        const t = setup({ document });
        t.lp.start();
        await flush();
        document.set("hidden");
        assert.equal(t.net.calls[0].aborted, false);
        assert.equal(document.listenerCount(), 0);
      });

      test("stop() removes the visibility listener", async () => {
        const document = fakeDocument("visible");
        const t = setup({ pauseWhenHidden: true, document });
        t.lp.start();
        assert.equal(document.listenerCount(), 1);
        t.lp.stop();
        assert.equal(document.listenerCount(), 0);
        document.set("hidden");
        document.set("visible");
        await flush();
        assert.equal(t.net.calls.length, 1);
      });

      test("pauses on the prefixed API of older WebKit (webkitVisibilityState)", async () => {
        const document = fakeDocument("visible", "webkitVisibilityState");
        const t = setup({ pauseWhenHidden: true, document });
        t.lp.start();
        await flush();
        document.set("hidden");
        assert.equal(t.net.calls[0].aborted, true);
        assert.equal(t.lp.paused, true);
        document.set("visible");
        await flush();
        assert.equal(t.net.calls.length, 2);
      });

      test("without a visibility API, pauseWhenHidden does nothing", async () => {
        const t = setup({ pauseWhenHidden: true, document: { addEventListener() { throw new Error("not called"); } } });
        t.lp.start();
        await flush();
        assert.equal(t.net.calls.length, 1);
        assert.equal(t.lp.paused, false);
      });
    });
  });
}

// -- what differs between the ways of sending ------------------------------------------------

describe("LongPoll: fetch where it can, XMLHttpRequest where it cannot", () => {
  const answerOnce = async (lp, net) => {
    lp.start();
    await flush();
    net.last().respond(200, { state: "ready", key: "K", cursor: "1", items: ["x"] }, { "X-Extra": "1" });
    await flush();
    lp.stop();
  };

  test("fetch and AbortController present: fetch, with fetchOptions and cache: no-store", async () => {
    const net = fakeNet();
    const items = [];
    const lp = new LongPoll("/s", { fetch: fakeFetch(net), XMLHttpRequest: fakeXMLHttpRequest(net),
      fetchOptions: { credentials: "include" }, onItems: (batch) => items.push(batch) });
    await answerOnce(lp, net);
    assert.deepEqual(net.calls.map((c) => c.via), ["fetch", "fetch"]);
    assert.equal(net.calls[0].init.credentials, "include");
    assert.equal(net.calls[0].init.cache, "no-store");
    assert.deepEqual(items, [["x"]]);
  });

  for (const [missing, options] of [["fetch", { fetch: null }], ["AbortController", { AbortController: null }]]) {
    test(`without ${missing}: XMLHttpRequest, asynchronous, with the same query, headers and answers`, async () => {
      const net = fakeNet();
      const items = [];
      const lp = new LongPoll("/s", { fetch: fakeFetch(net), XMLHttpRequest: fakeXMLHttpRequest(net), ...options,
        params: { identifier: "me" }, headers: { "X-Token": "t" }, fetchOptions: { credentials: "include" },
        onItems: (batch) => items.push(batch) });
      await answerOnce(lp, net);
      assert.deepEqual(net.calls.map((c) => c.via), ["xhr", "xhr"]);
      assert.deepEqual(net.calls[1].query, { identifier: "me", key: "K", cursor: "1", timeout: "25", max: "100" });
      assert.equal(net.calls[0].headers.Accept, "application/json");
      assert.equal(net.calls[0].headers["X-Token"], "t");
      assert.equal(net.calls[0].xhr.withCredentials, true, "credentials: include becomes withCredentials");
      assert.deepEqual(items, [["x"]]);
      assert.equal(net.calls[1].aborted, true, "stop() aborts the XMLHttpRequest");
    });
  }

  test("POST over XMLHttpRequest sends the JSON body", async () => {
    const net = fakeNet();
    const lp = new LongPoll("/f", { fetch: null, XMLHttpRequest: fakeXMLHttpRequest(net), method: "POST", params: { track: "a" } });
    lp.start();
    await flush();
    assert.equal(net.calls[0].method, "POST");
    assert.equal(net.calls[0].headers["Content-Type"], "application/json");
    assert.deepEqual(net.calls[0].body, { track: "a", timeout: 25, max: 100 });
    lp.stop();
  });

  test("an XMLHttpRequest that throws on send is a network error, retried", async () => {
    const clock = fakeClock();
    let sent = 0;
    class Refusing { open() {} setRequestHeader() {} send() { sent += 1; throw new Error("refused"); } abort() {} }
    const states = [];
    const lp = new LongPoll("/s", { fetch: null, XMLHttpRequest: Refusing, setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout, random: () => 1, onState: (state, info) => states.push([state, info]) });
    lp.start();
    await flush();
    assert.equal(states.at(-1)[0], "waiting");
    assert.equal(states.at(-1)[1].error.error, "network");
    await clock.advance(500);
    assert.equal(sent, 2);
    lp.stop();
  });

  test("neither fetch nor XMLHttpRequest: a clear error when made", () => {
    assert.throws(() => new LongPoll("/s", { fetch: null, XMLHttpRequest: null }), /neither fetch nor XMLHttpRequest/);
  });
});

// -- the jQuery plugin ------------------------------------------------------------------------

describe("jquery.longpoll.js", () => {
  const fakeTimers = () => {
    const clock = fakeClock();
    return { setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout };
  };

  test("$.longPoll returns a started poller; autoStart: false leaves it idle", async () => {
    const net = fakeNet();
    const $ = loadPlugin(fakeJQuery(net));
    const lp = $.longPoll("/topics/news", { ...fakeTimers(), params: { a: 1 } });
    assert.ok(lp instanceof $.longPoll.LongPoll);
    assert.equal(lp.running, true);
    await flush();
    assert.equal(net.calls.length, 1);
    assert.equal(net.calls[0].query.a, "1");
    lp.stop();
    const idle = $.longPoll("/x", { ...fakeTimers(), autoStart: false });
    assert.equal(idle.running, false);
  });

  test("$.ajax is asked for text, no timeout of its own, no global events; ajaxOptions add to that", async () => {
    const net = fakeNet();
    const $ = loadPlugin(fakeJQuery(net));
    const lp = $.longPoll("/s", { ...fakeTimers(), ajaxOptions: { xhrFields: { withCredentials: true }, timeout: 5000, global: true } });
    await flush();
    const settings = net.calls[0].settings;
    assert.equal(settings.type, "GET");
    assert.equal(settings.dataType, "text");
    assert.equal(settings.timeout, 0, "a page-wide timeout would cut held polls");
    assert.equal(settings.global, false, "a held poll would keep ajaxStart spinners on");
    assert.deepEqual(settings.xhrFields, { withCredentials: true });
    assert.equal(settings.headers.Accept, "application/json");
    lp.stop();
  });

  test("the Deferred: progress for each batch, done with the last body, in order", async () => {
    const net = fakeNet();
    const $ = loadPlugin(fakeJQuery(net));
    net.queue(ok([1, 2], { cursor: "1" }), ok([3], { cursor: "2" }), ok([4], { cursor: "3", state: "done" }));
    const seen = [];
    const lp = $.longPoll("/s", { ...fakeTimers(), autoStart: false });
    const returned = lp.progress((items, body) => seen.push(["progress", items, body.cursor]))
      .done((body) => seen.push(["done", body.cursor]))
      .fail(() => seen.push(["fail"]))
      .always(function () { seen.push(["always", this === lp]); });
    assert.equal(returned, lp, "chainable, like jQuery's own");
    lp.start();
    await flush();
    assert.deepEqual(seen, [["progress", [1, 2], "1"], ["progress", [3], "2"], ["progress", [4], "3"], ["done", "3"], ["always", true]]);
    assert.equal(lp.promise().state(), "resolved");
  });

  test("the Deferred fails with the error that stopped polling, and the user's onError still runs", async () => {
    const net = fakeNet();
    const $ = loadPlugin(fakeJQuery(net));
    net.queue(err(403, "forbidden"));
    const seen = [];
    const lp = $.longPoll("/s", { ...fakeTimers(), onError: (error) => seen.push(["onError", error.status]) })
      .fail((error) => seen.push(["fail", error.error, error instanceof $.longPoll.LongPoll.LongPollError]));
    await flush();
    assert.deepEqual(seen, [["onError", 403], ["fail", "forbidden", true]]);
    assert.equal(lp.promise().state(), "rejected");
  });

  test("a throwing onItems still lets the Deferred and the element hear of the batch", async () => {
    const original = globalThis.reportError;
    const reported = [];
    globalThis.reportError = (e) => reported.push(e.message);
    try {
      const net = fakeNet();
      const $ = loadPlugin(fakeJQuery(net));
      const el = { handlers: {} };
      const seen = [];
      net.queue(ok(["x"]));
      $(el).on("longpoll:items", (event, items) => seen.push(["event", items]));
      $(el).longPoll("/s", { ...fakeTimers(), onItems: () => { throw new Error("app bug"); } });
      $(el).data("longPoll").progress((items) => seen.push(["progress", items]));
      await flush();
      assert.deepEqual(seen, [["event", ["x"]], ["progress", ["x"]]]);
      assert.deepEqual(reported, ["app bug"]);
      $(el).longPoll("stop");
    } finally {
      globalThis.reportError = original;
    }
  });

  test("$(el).longPoll triggers items, state and error events, keeps the poller in data, and stops", async () => {
    const net = fakeNet();
    const $ = loadPlugin(fakeJQuery(net));
    const el = { handlers: {} };
    const seen = [];
    net.queue(ok(["x"], { key: "K" }));
    $(el)
      .on("longpoll:items", (event, items, body) => seen.push(["items", items, body.key]))
      .on("longpoll:state", (event, state) => seen.push(["state", state]))
      .on("longpoll:error", (event, error) => seen.push(["error", error.status]));
    let userItems = 0;
    const returned = $(el).longPoll("/s", { ...fakeTimers(), onItems: () => userItems++ });
    assert.equal(returned.elements[0], el, "chainable");
    const lp = $(el).data("longPoll");
    assert.ok(lp instanceof $.longPoll.LongPoll);
    await flush();
    assert.deepEqual(seen.slice(0, 2), [["state", "polling"], ["items", ["x"], "K"]]);
    assert.equal(userItems, 1, "the option callback is called as well");
    assert.equal(net.calls.length, 2);
    $(el).longPoll("stop");
    assert.equal(lp.running, false);
    assert.equal(net.calls[1].aborted, true);
    assert.deepEqual(seen.at(-1), ["state", "stopped"]);
    $(el).longPoll("start");
    await flush();
    net.last().respond(400, { error: "bad_parameter", message: "no", param: "p" });
    await flush();
    assert.deepEqual(seen.filter(([kind]) => kind === "error"), [["error", 400]]);
    assert.equal(lp.running, false);
  });

  test("a second $(el).longPoll stops the first", async () => {
    const net = fakeNet();
    const $ = loadPlugin(fakeJQuery(net));
    const el = { handlers: {} };
    $(el).longPoll("/a", fakeTimers());
    const first = $(el).data("longPoll");
    $(el).longPoll("/b", fakeTimers());
    assert.equal(first.running, false);
    assert.notEqual($(el).data("longPoll"), first);
    await flush();
    assert.equal(net.maxInFlight, 1);
    $(el).longPoll("stop");
  });

  test("$(el).longPoll with bad options throws, as $.longPoll does", () => {
    const $ = loadPlugin(fakeJQuery(fakeNet()));
    assert.throws(() => $({ handlers: {} }).longPoll("/s", { max: "all" }), /max must be a whole number/);
  });
});

// -- transports: "poll", "sse", "auto" (PROTOCOL.md, "Transports") ---------------------------------------------

/** EventSource on a fake net: each stream is a call; the test emits events on it, or fails it. */
function fakeEventSource(streams) {
  return class FakeEventSource {
    constructor(url, init) {
      const parsed = new URL(url, "http://page.test");
      Object.assign(this, { url, init, query: Object.fromEntries(parsed.searchParams), closed: false, listeners: {} });
      streams.push(this);
    }
    addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); }
    close() { this.closed = true; }
    /** The server answered 200 text/event-stream: the stream is open (no event yet). */
    open() {
      for (const fn of this.listeners.open || []) fn({ type: "open" });
    }
    /** A server event: a batch (type "message" or "done") or the server's own "expired"/"error". */
    emit(type, body, id) {
      assert.equal(this.closed, false, "an event on a closed stream");
      const event = { type, data: JSON.stringify(body), lastEventId: id || "" };
      if (type === "message" && this.onmessage) this.onmessage(event);
      for (const fn of this.listeners[type] || []) fn(event);
    }
    /** The connection failed or ended: EventSource's own error, an Event without data (also for any
     * answer but a 200 event stream: a 401 or a 503 looks the same as a refused connection). */
    fail() {
      for (const fn of this.listeners.error || []) fn({ type: "error" });
    }
  };
}

describe("transports", () => {
  const batch = (key, cursor, items, state = "ready") => ({ state, key, cursor, items });
  // These run on real (shortened) timers: a test that fails half-way must not leave its poller retrying,
  // which would keep node from ever exiting.  Backoffs (at most maxBackoff) take 5 ms; a request's own guard
  // (its hold + 10 s) keeps its length, unref'd: shortened too, a loaded machine timed a probe out before the
  // test had answered it.
  const timer = (fn, ms) => (ms > 1000 ? setTimeout(fn, ms).unref() : setTimeout(fn, Math.min(ms, 5)));
  const made = [];
  afterEach(() => { for (const lp of made.splice(0)) lp.stop(); });

  function make(options) {
    const net = fakeNet();
    const streams = [];
    const got = [];
    const states = [];
    const lp = new LongPoll("/statuses/sample.json", {
      fetch: fakeFetch(net), EventSource: fakeEventSource(streams), params: { identifier: "me" },
      setTimeout: timer, clearTimeout, maxBackoff: 1000,
      onItems: (items) => got.push(...items), onState: (state, info) => states.push([state, info]), ...options });
    made.push(lp);
    return { lp, net, streams, got, states };
  }

  test("poll is the default; sse and auto with EventSource stream, from the key and cursor, with no timeout", async () => {
    assert.equal(make({}).lp.transportInUse, "poll");
    for (const transport of ["sse", "auto"]) {
      const { lp, net, streams, got } = make({ transport, key: "K", cursor: "3" });
      assert.equal(lp.transportInUse, "sse");
      lp.start();
      await flush();
      assert.equal(net.calls.length, 0, "no poll while streaming");
      assert.equal(streams.length, 1);
      assert.deepEqual(streams[0].query, { identifier: "me", key: "K", cursor: "3", max: "100" });
      streams[0].emit("message", batch("K", "4", [1, 2]), "K.4");
      streams[0].emit("message", batch("K", "5", [3]), "K.5");
      assert.deepEqual(got, [1, 2, 3]);
      assert.equal(lp.cursor, "5");
      lp.stop();
      assert.equal(streams[0].closed, true, "stop() closes the stream");
    }
  });

  test("the same callbacks and states: done ends it, expired starts a new session, a server error stops it", async () => {
    const { lp, streams, got, states } = make({ transport: "sse" });
    lp.start();
    await flush();
    streams[0].emit("message", batch("A", "1", []), "A.1");
    streams[0].emit("expired", { error: "expired", message: "gone", status: 410 });
    await flush();
    assert.equal(streams[0].closed, true);
    assert.ok(states.some(([s]) => s === "expired"));
    assert.equal(streams.length, 2, "a new stream at once");
    assert.equal(streams[1].query.key, undefined, "with a new session");
    streams[1].emit("message", batch("B", "1", ["x"]), "B.1");
    streams[1].emit("done", batch("B", "2", ["y"], "done"), "B.2");
    assert.deepEqual(got, ["x", "y"]);
    assert.equal(streams[1].closed, true, "done: no reconnect");
    assert.equal(lp.running, false);
    assert.equal(states[states.length - 1][0], "done");

    const errors = [];
    const second = make({ transport: "sse", onError: (e) => errors.push(e) });
    second.lp.start();
    await flush();
    second.streams[0].emit("error", { error: "forbidden", message: "not yours", status: 403 });
    await flush();
    assert.equal(errors.length, 1);
    assert.equal(errors[0].status, 403);
    assert.equal(second.lp.running, false);
  });

  test("a stream that ends after delivering reopens at once from its cursor: nothing lost, nothing twice", async () => {
    const { lp, streams, got } = make({ transport: "auto" });
    lp.start();
    await flush();
    streams[0].emit("message", batch("K", "1", ["a"]), "K.1");
    streams[0].fail();  // the server's time limit, or it restarted
    await flush();
    assert.equal(streams.length, 2);
    assert.equal(lp.transportInUse, "sse", "still streaming");
    assert.deepEqual([streams[1].query.key, streams[1].query.cursor], ["K", "1"]);
    streams[1].emit("message", batch("K", "2", ["b"]), "K.2");
    assert.deepEqual(got, ["a", "b"]);
    lp.stop();
  });

  test("auto falls back to polling when the endpoint never streams, and keeps key and cursor", async () => {
    const { lp, net, streams, got } = make({ transport: "auto", key: "K", cursor: "7" });
    lp.start();
    await flush();
    streams[0].fail();
    await flush();
    // The probe: what was the stream answered? A batch: polls come through where the stream did not.
    assert.deepEqual(net.last().query, { identifier: "me", key: "K", cursor: "7", timeout: "0", max: "100" });
    net.last().respond(200, batch("K", "8", ["y"]));
    await flush();
    assert.equal(lp.transportInUse, "poll");
    assert.equal(streams.length, 1, "no second stream");
    assert.deepEqual(net.last().query, { identifier: "me", key: "K", cursor: "8", timeout: "25", max: "100" });
    net.last().respond(200, batch("K", "9", ["z"]));
    await flush();
    assert.deepEqual(got, ["y", "z"]);
    assert.equal(net.last().query.cursor, "9");
    lp.stop();
  });

  test("auto also falls back when its first stream opened but ended before any event (no probe: it was a 200)",
    async () => {
      const { lp, net, streams } = make({ transport: "auto", key: "K", cursor: "7" });
      lp.start();
      await flush();
      streams[0].open();
      streams[0].fail();
      await flush();
      assert.equal(lp.transportInUse, "poll");
      assert.deepEqual(net.last().query, { identifier: "me", key: "K", cursor: "7", timeout: "25", max: "100" });
      lp.stop();
    });

  test("auto polls where EventSource is missing or cannot be used (POST, headers); sse there is refused", () => {
    for (const options of [{ EventSource: null }, { method: "POST" }, { headers: { Authorization: "Bearer t" } }]) {
      assert.equal(make({ transport: "auto", ...options }).lp.transportInUse, "poll");
      assert.throws(() => make({ transport: "sse", ...options }), /transport "sse" needs EventSource/);
    }
    assert.throws(() => make({ transport: "websocket" }), /transport must be/);
  });

  test("stop() closes the stream and start() opens it again from the same key and cursor; so does a hidden page", async () => {
    const doc = { visibilityState: "visible", listeners: {},
      addEventListener(type, fn) { this.listeners[type] = fn; }, removeEventListener(type) { delete this.listeners[type]; } };
    const { lp, streams } = make({ transport: "sse", document: doc, pauseWhenHidden: true });
    lp.start();
    await flush();
    streams[0].emit("message", batch("K", "1", ["a"]), "K.1");
    lp.stop();
    assert.equal(streams[0].closed, true);
    lp.start();
    await flush();
    assert.equal(streams.length, 2, "a stream again after start()");
    assert.deepEqual([streams[1].query.key, streams[1].query.cursor], ["K", "1"]);
    doc.visibilityState = "hidden";
    doc.listeners.visibilitychange();
    assert.equal(streams[1].closed, true);
    doc.visibilityState = "visible";
    doc.listeners.visibilitychange();
    await flush();
    assert.equal(streams.length, 3, "and after the page is shown again");
    lp.stop();
  });

  test("a stream the server turns away (retry_ms) is closed and opened again after that wait, not at once", async () => {
    const { lp, streams, states } = make({ transport: "sse" });
    lp.start();
    await flush();
    streams[0].emit("message", { ...batch("K", "0", []), retry_ms: 1000 }, "K.0");
    assert.equal(streams[0].closed, true);
    assert.ok(states.some(([s, info]) => s === "waiting" && info.reason === "retry_ms" && info.delay === 1000));
    assert.equal(streams.length, 1, "no reconnect before the wait");
    await new Promise((resolve) => setTimeout(resolve, 20));  // make()'s timers run at most 5 ms
    await flush();
    assert.equal(streams.length, 2);
    assert.deepEqual([streams[1].query.key, streams[1].query.cursor], ["K", "0"]);
    lp.stop();
  });

  test("sse keeps streaming after a failed first connection, backing off", async () => {
    const { lp, net, streams, states } = make({ transport: "sse", minBackoff: 1, maxBackoff: 1 });
    lp.start();
    await flush();
    streams[0].fail();
    await flush();
    net.last().fail();  // the probe finds no server either
    await flush();
    assert.ok(states.some(([s, info]) => s === "waiting" && info.error.error === "network"));
    await new Promise((resolve) => setTimeout(resolve, 20));
    await flush();
    assert.equal(streams.length, 2);
    assert.equal(net.calls.length, 1, "one probe, then a stream again");
    assert.equal(lp.transportInUse, "sse");
    lp.stop();
  });

  test("sse: a stream that opened and ended without an event is retried after the backoff's first step, no probe",
    async () => {
      const { lp, net, streams, states } = make({ transport: "sse", minBackoff: 1, maxBackoff: 1000 });
      lp.start();
      await flush();
      for (let i = 0; i < 4; i++) {  // a quiet stream, ended by the server's time limit again and again
        streams[i].open();
        streams[i].fail();
        await flush();
        assert.equal(net.calls.length, 0);
        const waiting = states.filter(([s]) => s === "waiting");
        assert.equal(waiting.length, i + 1);
        assert.deepEqual([waiting[i][1].error.error, waiting[i][1].attempt], ["network", 1], "not ever longer waits");
        await new Promise((resolve) => setTimeout(resolve, 20));
        await flush();
        assert.equal(streams.length, i + 2);
      }
      lp.stop();
    });
});

// -- an answer before a stream starts (issue 20, "Browser clients") --------------------------------------------

describe("an error the server answers before a stream starts", () => {
  const batch = (key, cursor, items, state = "ready") => ({ state, key, cursor, items });

  /** A LongPoll on a fake EventSource and a fake net (fetch, XMLHttpRequest or $.ajax), on a virtual clock. */
  function make(client, options) {
    const streams = [];
    const t = setupFor(client, { url: "/statuses/home.json", params: { identifier: "me", stream_token: "T1" },
      EventSource: fakeEventSource(streams), ...options });
    return { ...t, streams };
  }

  /** The stream fails before it opened; returns the probe poll that follows. */
  async function refusedStream(t, index = t.streams.length - 1) {
    const calls = t.net.calls.length;
    t.streams[index].fail();
    await flush();
    assert.equal(t.net.calls.length, calls + 1, "one probe");
    return t.net.last();
  }

  for (const client of Object.keys(CLIENTS)) {
    describe(client, () => {
      for (const [status, code] of [[400, "bad_parameter"], [401, "stream_token_expired"], [403, "forbidden"]]) {
        for (const transport of ["sse", "auto"]) {
          test(`${transport}: ${status} stops with onError, as it would for a poll`, async () => {
            const t = make(client, { transport, key: "K", cursor: "4" });
            t.lp.start();
            await flush();
            const probe = await refusedStream(t);
            assert.deepEqual(probe.query,
              { identifier: "me", stream_token: "T1", key: "K", cursor: "4", timeout: "0", max: "100" });
            assert.equal(headerIn(probe.headers, "Accept"), "application/json");
            probe.respond(status, { error: code, message: "refused", param: "stream_token" });
            await flush();
            assert.equal(t.log.errors.length, 1);
            const [error] = t.log.errors;
            assert.ok(error instanceof Error);
            assert.deepEqual([error.status, error.error, error.message, error.param], [status, code, "refused", "stream_token"]);
            assert.deepEqual(t.stateNames().slice(-1), ["stopped"]);
            assert.equal(t.log.states.at(-1)[1].status, status);
            assert.equal(t.lp.running, false);
            assert.deepEqual([t.lp.key, t.lp.cursor], ["K", "4"], "kept: start() after a fix resumes the session");
            await t.clock.advance(60_000);
            assert.equal(t.streams.length, 1, "no stream again");
            assert.equal(t.net.calls.length, 1, "no poll again");
            // a new token, then start(): the same session, streamed again
            t.lp.params.stream_token = "T2";
            t.lp.start();
            await flush();
            assert.equal(t.streams.length, 2);
            assert.equal(t.lp.transportInUse, "sse");
            assert.deepEqual([t.streams[1].query.stream_token, t.streams[1].query.key, t.streams[1].query.cursor],
              ["T2", "K", "4"]);
            t.lp.stop();
          });
        }
      }

      test("a 410 starts a new session at once, streamed", async () => {
        const t = make(client, { transport: "sse", key: "OLD", cursor: "9" });
        t.lp.start();
        await flush();
        const probe = await refusedStream(t);
        probe.respond(410, { error: "expired", message: "unknown or expired session key", state: "expired" });
        await flush();
        assert.ok(t.stateNames().includes("expired"));
        assert.equal(t.streams.length, 2, "a new stream at once");
        assert.equal(t.streams[1].query.key, undefined, "for a new session");
        t.streams[1].emit("message", batch("NEW", "0", []), "NEW.0");
        assert.equal(t.lp.key, "NEW");
        assert.ok(t.stateNames().includes("restarted"));
        assert.equal(t.log.errors.length, 0);
        t.lp.stop();
      });

      test("a 429 or 503 is retried after the backoff and Retry-After, streaming again", async () => {
        const t = make(client, { transport: "sse", key: "K", cursor: "1" });
        t.lp.start();
        await flush();
        let probe = await refusedStream(t);
        probe.respond(429, { error: "too_many_sessions", message: "too many" }, { "Retry-After": "3" });
        await flush();
        assert.deepEqual([t.lastWaiting().status, t.lastWaiting().retryAfter, t.lastWaiting().delay], [429, 3, 3000]);
        await t.clock.advance(2999);
        assert.equal(t.streams.length, 1, "not before Retry-After");
        await t.clock.advance(1);
        assert.equal(t.streams.length, 2, "then a stream, not a poll");
        probe = await refusedStream(t);
        probe.respond(503, { error: "backend_unavailable", message: "down", retry_ms: 2000 });
        await flush();
        assert.deepEqual([t.lastWaiting().status, t.lastWaiting().attempt], [503, 2]);
        assert.equal(t.log.errors.length, 0);
        assert.equal(t.lp.running, true);
        t.lp.stop();
      });

      test("a probe answered with a batch: its items are taken, then the stream again after a growing backoff",
        async () => {
          const t = make(client, { transport: "sse", key: "K", cursor: "1" });
          t.lp.start();
          await flush();
          let probe = await refusedStream(t);
          probe.respond(200, batch("K", "2", ["a"]));
          await flush();
          assert.deepEqual(t.log.items, [["a"]]);
          assert.equal(t.lastWaiting().attempt, 1);
          await t.clock.advance(t.lastWaiting().delay);
          assert.deepEqual([t.streams.length, t.streams[1].query.cursor], [2, "2"]);
          probe = await refusedStream(t);
          probe.respond(200, batch("K", "2", []));
          await flush();
          assert.equal(t.lastWaiting().attempt, 2, "the backoff grows: a probe's answer does not reset it");
          t.lp.stop();
        });

      test("auto, after it has streamed: a refused reconnect is probed and its error stops it", async () => {
        const t = make(client, { transport: "auto" });
        t.lp.start();
        await flush();
        t.streams[0].open();
        t.streams[0].emit("message", batch("K", "1", ["a"]), "K.1");
        t.streams[0].fail();  // the server's max-stream-seconds: reopened at once
        await flush();
        assert.equal(t.streams.length, 2);
        assert.equal(t.net.calls.length, 0, "no probe for a stream that delivered");
        const probe = await refusedStream(t);
        assert.deepEqual([probe.query.key, probe.query.cursor, probe.query.timeout], ["K", "1", "0"]);
        probe.respond(401, { error: "stream_token_expired", message: "expired" });
        await flush();
        assert.equal(t.log.errors[0].error, "stream_token_expired");
        assert.equal(t.lp.running, false);
        assert.equal(t.lp.transportInUse, "sse", "still a streaming endpoint");
      });

      test("stop() during the probe: start() streams again, from the same key and cursor", async () => {
        const t = make(client, { transport: "sse", key: "K", cursor: "5" });
        t.lp.start();
        await flush();
        const probe = await refusedStream(t);
        t.lp.stop();
        await flush();
        assert.equal(probe.aborted, true);
        t.lp.start();
        await flush();
        assert.equal(t.streams.length, 2);
        assert.deepEqual([t.streams[1].query.key, t.streams[1].query.cursor], ["K", "5"]);
        t.lp.stop();
      });
    });
  }
});
