// Tests of web/longpoll.js (through longpoll.mjs) and web/jquery.longpoll.js.
// Run: node --test web/test/
//
// Everything is driven by fakes: a fetch whose answers the test scripts (and
// which records every request), timers on a virtual clock, a fixed random(),
// and a fake document for page visibility. No network, no real waiting.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

import LongPollDefault, { LongPoll, LongPollError } from "../longpoll.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

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

function response(status, body, headers = {}) {
  const text = body === undefined ? null : typeof body === "string" ? body : JSON.stringify(body);
  return new Response(text, { status, headers: { "Content-Type": "application/json", ...headers } });
}

/**
 * A fetch that records every request and answers from a script; with the
 * script empty, a request stays pending until the test calls respond()/fail()
 * on it. honourAbort: false makes it ignore the AbortSignal, like a fetch
 * whose abort takes its time.
 */
function fakeFetch({ honourAbort = true } = {}) {
  const script = [];
  const calls = [];
  let inFlight = 0;
  const fetch = (url, init = {}) => {
    const parsed = new URL(url, "http://page.test");
    const call = {
      url,
      method: init.method || "GET",
      path: parsed.pathname,
      query: Object.fromEntries(parsed.searchParams),
      body: init.body === undefined ? undefined : JSON.parse(init.body),
      headers: init.headers || {},
      signal: init.signal,
      settled: false,
    };
    inFlight += 1;
    fetch.maxInFlight = Math.max(fetch.maxInFlight, inFlight);
    const promise = new Promise((resolve, reject) => {
      const settle = (fn) => (value) => {
        if (call.settled) return;
        call.settled = true;
        inFlight -= 1;
        fn(value);
      };
      call.respond = (status, body, headers) => settle(resolve)(response(status, body, headers));
      call.fail = (error = new TypeError("fetch failed")) => settle(reject)(error);
    });
    if (honourAbort && init.signal) {
      init.signal.addEventListener("abort", () => call.fail(new DOMException("This operation was aborted", "AbortError")));
    }
    calls.push(call);
    const next = script.shift();
    if (next) {
      if (next.fail) call.fail(next.fail);
      else call.respond(next.status, next.body, next.headers);
    }
    return promise;
  };
  fetch.calls = calls;
  fetch.maxInFlight = 0;
  fetch.inFlight = () => inFlight;
  fetch.last = () => calls[calls.length - 1];
  /** Queue scripted answers for the next requests. */
  fetch.queue = (...answers) => script.push(...answers);
  return fetch;
}

const ok = (items = [], { key = "K1", cursor = "1", state = "ready", ...extra } = {}) =>
  ({ status: 200, body: { state, key, cursor, items, ...extra } });
const err = (status, error, extra = {}, headers = {}) =>
  ({ status, body: { error, message: `${error} happened`, ...extra }, headers });
const networkError = () => ({ fail: new TypeError("fetch failed") });

function fakeDocument(visibilityState = "visible") {
  const listeners = new Set();
  return {
    visibilityState,
    addEventListener(type, fn) { if (type === "visibilitychange") listeners.add(fn); },
    removeEventListener(type, fn) { if (type === "visibilitychange") listeners.delete(fn); },
    listenerCount: () => listeners.size,
    set(state) {
      this.visibilityState = state;
      for (const fn of [...listeners]) fn({ type: "visibilitychange" });
    },
  };
}

function setup({ url = "/stream", random = 0.5, fetchOptions, ...options } = {}) {
  const clock = fakeClock();
  const fetch = fakeFetch(fetchOptions);
  const log = { items: [], bodies: [], states: [], errors: [] };
  const lp = new LongPoll(url, {
    fetch,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => random,
    document: null,
    onItems: (items, body) => { log.items.push(items); log.bodies.push(body); },
    onState: (state, info) => log.states.push([state, info]),
    onError: (error) => log.errors.push(error),
    ...options,
  });
  const stateNames = () => log.states.map(([name]) => name);
  const lastWaiting = () => [...log.states].reverse().find(([name]) => name === "waiting")?.[1];
  return { clock, fetch, log, lp, stateNames, lastWaiting };
}

/** The next request happens exactly `delay` ms after now: not one ms sooner.
 * (Scripted answers come at once, so it may be followed by more requests.) */
async function expectNextRequestAfter(t, delay) {
  const before = t.fetch.calls.length;
  await t.clock.advance(delay - 1);
  assert.equal(t.fetch.calls.length, before, `no request before ${delay} ms`);
  await t.clock.advance(1);
  assert.ok(t.fetch.calls.length > before, `a request at ${delay} ms`);
}

// -- the module ----------------------------------------------------------------

describe("module", () => {
  test("longpoll.mjs re-exports the global LongPoll, as named and default export", () => {
    assert.equal(typeof LongPoll, "function");
    assert.equal(LongPoll, globalThis.LongPoll);
    assert.equal(LongPollDefault, LongPoll);
    assert.equal(LongPollError, LongPoll.LongPollError);
  });
});

// -- key and cursor ------------------------------------------------------------------

describe("session key and cursor", () => {
  test("the first poll has no key and no cursor; GET sends params, timeout and max in the query", async () => {
    const t = setup({ params: { identifier: "me", percent: 7 }, timeout: 12, max: 5 });
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 1);
    const call = t.fetch.calls[0];
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
    assert.equal(t.fetch.calls[0].query.timeout, "25");
    assert.equal(t.fetch.calls[0].query.max, "100");
  });

  test("an existing query string in the URL is kept", async () => {
    const t = setup({ url: "/stream?a=1", params: { b: 2 } });
    t.lp.start();
    await flush();
    assert.deepEqual(t.fetch.calls[0].query, { a: "1", b: "2", timeout: "25", max: "100" });
  });

  test("key and cursor of an answer go with the next poll; the previous cursor is not sent again", async () => {
    const t = setup({ params: { identifier: "me" } });
    t.fetch.queue(ok(["a"], { key: "K1", cursor: "1" }), ok(["b", "c"], { key: "K1", cursor: "2" }));
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 3);
    assert.equal(t.fetch.calls[1].query.key, "K1");
    assert.equal(t.fetch.calls[1].query.cursor, "1");
    assert.equal(t.fetch.calls[1].query.identifier, "me", "params go with every poll");
    assert.equal(t.fetch.calls[2].query.key, "K1");
    assert.equal(t.fetch.calls[2].query.cursor, "2");
    assert.deepEqual(t.log.items, [["a"], ["b", "c"]]);
    assert.equal(t.log.bodies[1].cursor, "2", "onItems gets the whole body too");
    assert.equal(t.lp.key, "K1");
    assert.equal(t.lp.cursor, "2");
  });

  test("an empty answer keeps the cursor and calls no onItems", async () => {
    const t = setup();
    t.fetch.queue(ok(["a"], { cursor: "1" }), ok([], { cursor: "1" }), ok([], { cursor: "1" }));
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 4);
    for (const call of t.fetch.calls.slice(1)) {
      assert.equal(call.query.key, "K1");
      assert.equal(call.query.cursor, "1");
    }
    assert.deepEqual(t.log.items, [["a"]]);
  });

  test("POST sends params, key, cursor, timeout and max as a JSON body", async () => {
    const t = setup({ method: "POST", params: { identifier: "me", track: "a,b c" }, timeout: 3, max: 9 });
    t.fetch.queue(ok(["x"], { key: "KP", cursor: "4" }));
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 2);
    const [first, second] = t.fetch.calls;
    assert.equal(first.method, "POST");
    assert.deepEqual(first.query, {}, "nothing in the query string");
    assert.equal(first.headers["Content-Type"], "application/json");
    assert.deepEqual(first.body, { identifier: "me", track: "a,b c", timeout: 3, max: 9 });
    assert.deepEqual(second.body, { identifier: "me", track: "a,b c", key: "KP", cursor: "4", timeout: 3, max: 9 });
  });

  test("410 drops key and cursor, and a new session starts at once", async () => {
    const t = setup();
    t.fetch.queue(
      ok(["a"], { key: "OLD", cursor: "3" }),
      err(410, "expired", { state: "expired" }),
      ok(["b"], { key: "NEW", cursor: "1" }),
    );
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 4, "no waiting after 410");
    assert.equal(t.fetch.calls[1].query.key, "OLD");
    assert.equal("key" in t.fetch.calls[2].query, false, "the poll after 410 has no key");
    assert.equal("cursor" in t.fetch.calls[2].query, false, "... and no cursor");
    assert.equal(t.fetch.calls[3].query.key, "NEW");
    assert.equal(t.fetch.calls[3].query.cursor, "1");
    const names = t.stateNames();
    assert.ok(names.indexOf("expired") >= 0 && names.indexOf("restarted") > names.indexOf("expired"), names.join());
    assert.deepEqual(t.log.items, [["a"], ["b"]]);
    assert.equal(t.log.errors.length, 0);
  });

  test("a 410 to a poll without a key backs off instead of spinning", async () => {
    const t = setup({ random: 1 });
    t.fetch.queue(err(410, "expired", { state: "expired" }));
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 1);
    await expectNextRequestAfter(t, 500);
  });

  test("quickStart: a new session's first poll asks for timeout 0, later polls for the real timeout", async () => {
    const t = setup({ quickStart: true, timeout: 20 });
    t.fetch.queue(ok([], { key: "K", cursor: "0" }), err(410, "expired", { state: "expired" }), ok([], { key: "K2", cursor: "0" }));
    t.lp.start();
    await flush();
    assert.deepEqual(t.fetch.calls.map((c) => [c.query.key, c.query.timeout]),
      [[undefined, "0"], ["K", "20"], [undefined, "0"], ["K2", "20"]]);
  });

  test("without quickStart the first poll asks for the real timeout", async () => {
    const t = setup({ timeout: 20 });
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls[0].query.timeout, "20");
  });

  test("key and cursor options resume an existing session", async () => {
    const t = setup({ key: "SAVED", cursor: "7" });
    assert.equal(t.lp.key, "SAVED");
    t.lp.start();
    await flush();
    assert.deepEqual([t.fetch.calls[0].query.key, t.fetch.calls[0].query.cursor], ["SAVED", "7"]);
  });

  test("stop() then start() resumes the same session", async () => {
    const t = setup();
    t.fetch.queue(ok(["a"], { key: "K", cursor: "5" }));
    t.lp.start();
    await flush();
    t.lp.stop();
    await flush();
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 3);
    assert.equal(t.fetch.calls[2].query.key, "K");
    assert.equal(t.fetch.calls[2].query.cursor, "5");
  });
});

// -- backoff -------------------------------------------------------------------------

describe("backoff", () => {
  test("grows exponentially with equal jitter and is capped at maxBackoff", async () => {
    const t = setup({ random: 0.5, minBackoff: 100, maxBackoff: 1000 });
    t.fetch.queue(err(503, "unavailable"), err(503, "unavailable"), err(503, "unavailable"),
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
        const lp = new LongPoll("/x", { fetch: () => null, random: () => r, jitter, minBackoff: 500, maxBackoff: 30000 });
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
    t.fetch.queue(networkError(), networkError(), networkError());
    t.lp.start();
    await flush();
    await expectNextRequestAfter(t, 100);
    await expectNextRequestAfter(t, 200);
    await expectNextRequestAfter(t, 400);
  });

  test("Retry-After (seconds) is the lower bound of the wait", async () => {
    const t = setup({ random: 0.5, minBackoff: 500 });
    t.fetch.queue(err(429, "too_many_sessions", {}, { "Retry-After": "7" }));
    t.lp.start();
    await flush();
    assert.equal(t.lastWaiting().delay, 7000);
    await expectNextRequestAfter(t, 7000);
    assert.equal("key" in t.fetch.last().query, false);
  });

  test("a backoff longer than Retry-After wins", async () => {
    const t = setup({ random: 0.5, minBackoff: 8000, maxBackoff: 60000 });
    t.fetch.queue(err(503, "backend_unavailable", {}, { "Retry-After": "2" }));
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
    t.fetch.queue(ok([], { key: "K", cursor: "0", retry_ms: 1234 }), ok(["late"], { key: "K", cursor: "1" }));
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 1);
    await expectNextRequestAfter(t, 1234);
    assert.equal(t.fetch.calls[1].query.key, "K");
    assert.deepEqual(t.log.items, [["late"]]);
  });

  test("the backoff starts over after a success", async () => {
    const t = setup({ random: 0.5, minBackoff: 100 });
    t.fetch.queue(err(500, "generator_failed"), err(502, "bad_gateway"), ok(["a"]), networkError());
    t.lp.start();
    await flush();
    await expectNextRequestAfter(t, 75);
    await expectNextRequestAfter(t, 150);
    // the success was answered at once, then the network error: attempt 1 again
    assert.deepEqual(t.log.items, [["a"]]);
    assert.equal(t.lastWaiting().attempt, 1);
    await expectNextRequestAfter(t, 75);
  });

  test("5xx and network errors are retried with the same key and cursor", async () => {
    const t = setup({ random: 0 , minBackoff: 10, jitter: "none" });
    t.fetch.queue(ok(["a"], { key: "K", cursor: "2" }), err(500, "generator_failed"), networkError(), err(503, "x"));
    t.lp.start();
    await flush();
    await t.clock.advance(10 + 20 + 40);
    assert.equal(t.fetch.calls.length, 5);
    for (const call of t.fetch.calls.slice(1)) assert.deepEqual([call.query.key, call.query.cursor], ["K", "2"]);
    assert.equal(t.log.errors.length, 0, "retried errors are not onError");
    assert.equal(t.lp.running, true);
  });

  test("a 200 that is not a batch is retried like a server error", async () => {
    const t = setup({ random: 1, minBackoff: 50 });
    t.fetch.queue({ status: 200, body: "<html>proxy login</html>" });
    t.lp.start();
    await flush();
    await expectNextRequestAfter(t, 50);
  });

  test("a poll with no answer within timeout + 10 s is aborted and retried", async () => {
    const t = setup({ timeout: 5, random: 1, minBackoff: 1000 });
    t.lp.start();
    await flush();
    const first = t.fetch.calls[0];
    await t.clock.advance(14_999);
    assert.equal(first.signal.aborted, false);
    await t.clock.advance(1);
    assert.equal(first.signal.aborted, true, "aborted at 15 s");
    assert.equal(t.lastWaiting().error.error, "timeout");
    await expectNextRequestAfter(t, 1000);
  });
});

// -- ends ------------------------------------------------------------------------------

describe("ending", () => {
  for (const [status, code] of [[400, "bad_parameter"], [401, "unauthorized"], [403, "forbidden"], [404, "not_found"], [405, "method_not_allowed"]]) {
    test(`${status} calls onError with the JSON error and stops`, async () => {
      const t = setup();
      t.fetch.queue(err(status, code, status === 400 ? { param: "percent" } : {}));
      t.lp.start();
      await flush();
      await t.clock.advance(10 * 60 * 1000);
      assert.equal(t.fetch.calls.length, 1, "never retried");
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
    t.fetch.queue(ok([1, 2], { cursor: "1" }), ok([3], { cursor: "2", state: "done" }));
    t.lp.start();
    await flush();
    await t.clock.advance(60_000);
    assert.equal(t.fetch.calls.length, 2);
    assert.deepEqual(t.log.items, [[1, 2], [3]]);
    assert.equal(t.lp.running, false);
    assert.equal(t.stateNames().at(-1), "done");
    assert.equal(t.log.errors.length, 0);
  });

  test("stop() aborts the poll in flight and cancels nothing else", async () => {
    const t = setup();
    t.lp.start();
    await flush();
    const call = t.fetch.calls[0];
    assert.equal(call.signal.aborted, false);
    t.lp.stop();
    assert.equal(call.signal.aborted, true);
    await t.clock.advance(60_000);
    assert.equal(t.fetch.calls.length, 1);
    assert.equal(t.lp.running, false);
    assert.equal(t.stateNames().at(-1), "stopped");
    assert.equal(t.log.errors.length, 0, "an abort is not an error");
  });

  test("stop() during a backoff cancels the retry", async () => {
    const t = setup();
    t.fetch.queue(networkError());
    t.lp.start();
    await flush();
    assert.equal(t.stateNames().at(-1), "waiting");
    t.lp.stop();
    await t.clock.advance(60 * 60 * 1000);
    assert.equal(t.fetch.calls.length, 1);
  });

  test("stop() from onItems stops after that batch", async () => {
    const t = setup({ onItems: () => t.lp.stop() });
    t.fetch.queue(ok(["a"]));
    t.lp.start();
    await flush();
    await t.clock.advance(60_000);
    assert.equal(t.fetch.calls.length, 1);
  });

  test("a throwing onItems does not stop polling", async () => {
    const errors = [];
    const original = globalThis.reportError;
    globalThis.reportError = (e) => errors.push(e);
    try {
      const t = setup({ onItems: () => { throw new Error("app bug"); } });
      t.fetch.queue(ok(["a"]), ok(["b"], { cursor: "2" }));
      t.lp.start();
      await flush();
      assert.equal(t.fetch.calls.length, 3);
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
    assert.equal(t.fetch.calls.length, 1);
    assert.equal(t.fetch.maxInFlight, 1);
  });

  test("start() during a backoff neither polls early nor resets the backoff", async () => {
    const t = setup({ random: 0.5, minBackoff: 100 });
    t.fetch.queue(networkError(), networkError());
    t.lp.start();
    await flush();
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 1);
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
    assert.equal(t.fetch.calls.length, 1);
    assert.equal(t.lp.paused, true);
  });

  test("the next poll is sent only after the previous one settled", async () => {
    const t = setup();
    t.lp.start();
    await flush();
    await t.clock.advance(1000);
    assert.equal(t.fetch.calls.length, 1);
    t.fetch.calls[0].respond(200, { state: "ready", key: "K", cursor: "1", items: [1] });
    await flush();
    assert.equal(t.fetch.calls.length, 2);
    assert.equal(t.fetch.maxInFlight, 1);
  });

  test("stop() and start() during a poll whose fetch ignores the abort: the new poll waits for the old", async () => {
    const t = setup({ fetchOptions: { honourAbort: false } });
    t.fetch.queue(ok(["a"], { key: "K", cursor: "1" }));
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 2);
    const old = t.fetch.calls[1];
    t.lp.stop();
    t.lp.start();
    t.lp.stop();
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 2, "no second request while the old one is unsettled");
    old.respond(200, { state: "ready", key: "K", cursor: "2", items: ["from the stopped poll"] });
    await flush();
    assert.equal(t.fetch.calls.length, 3);
    assert.equal(t.fetch.maxInFlight, 1);
    assert.deepEqual(t.log.items, [["a"]], "the answer of a stopped poll is not taken");
    assert.equal(t.fetch.calls[2].query.cursor, "1", "so its batch is asked for again");
  });

  test("stop() and start() during a poll with an aborting fetch", async () => {
    const t = setup();
    t.lp.start();
    await flush();
    t.lp.stop();
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 2);
    assert.equal(t.fetch.calls[0].signal.aborted, true);
    assert.equal(t.fetch.maxInFlight, 1);
  });

  test("a long random mix of start, stop, answers, failures and time keeps one poll at most", async () => {
    for (const honourAbort of [true, false]) {
      const t = setup({ fetchOptions: { honourAbort }, minBackoff: 10, maxBackoff: 100 });
      let seed = 42;
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      let cursor = 0;
      for (let step = 0; step < 400; step++) {
        const r = rand();
        const open = t.fetch.calls.filter((c) => !c.settled);
        if (r < 0.15) t.lp.start();
        else if (r < 0.25) t.lp.stop();
        else if (r < 0.55 && open.length) open[0].respond(200, { state: "ready", key: "K", cursor: String(++cursor), items: [cursor] });
        else if (r < 0.65 && open.length) open[0].respond(503, { error: "x", message: "x" });
        else if (r < 0.7 && open.length) open[0].fail();
        else await t.clock.advance(Math.floor(rand() * 200));
        await flush();
        assert.ok(t.fetch.inFlight() <= 1, `step ${step}: ${t.fetch.inFlight()} in flight`);
      }
      assert.equal(t.fetch.maxInFlight, 1);
      assert.ok(t.fetch.calls.length > 50, `it did poll (${t.fetch.calls.length})`);
    }
  });
});

// -- page visibility ------------------------------------------------------------------------

describe("pauseWhenHidden", () => {
  test("hiding the page aborts the poll and pauses; showing it resumes with key and cursor", async () => {
    const document = fakeDocument("visible");
    const t = setup({ pauseWhenHidden: true, document });
    t.fetch.queue(ok(["a"], { key: "K", cursor: "3" }));
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 2);
    document.set("hidden");
    assert.equal(t.fetch.calls[1].signal.aborted, true);
    assert.equal(t.lp.paused, true);
    assert.equal(t.lp.running, true);
    assert.equal(t.stateNames().at(-1), "paused");
    await t.clock.advance(10 * 60 * 1000);
    assert.equal(t.fetch.calls.length, 2, "no polls while hidden");
    document.set("visible");
    await flush();
    assert.equal(t.fetch.calls.length, 3);
    assert.deepEqual([t.fetch.calls[2].query.key, t.fetch.calls[2].query.cursor], ["K", "3"]);
    assert.equal(t.lp.paused, false);
    assert.equal(t.fetch.maxInFlight, 1);
  });

  test("starting while hidden waits for the page to show", async () => {
    const document = fakeDocument("hidden");
    const t = setup({ pauseWhenHidden: true, document });
    t.lp.start();
    await flush();
    assert.equal(t.fetch.calls.length, 0);
    assert.equal(t.stateNames().at(-1), "paused");
    document.set("visible");
    await flush();
    assert.equal(t.fetch.calls.length, 1);
  });

  test("hiding during a backoff cancels the retry until visible", async () => {
    const document = fakeDocument("visible");
    const t = setup({ pauseWhenHidden: true, document });
    t.fetch.queue(networkError());
    t.lp.start();
    await flush();
    document.set("hidden");
    await t.clock.advance(10 * 60 * 1000);
    assert.equal(t.fetch.calls.length, 1);
    document.set("visible");
    await flush();
    assert.equal(t.fetch.calls.length, 2);
  });

  test("without pauseWhenHidden a hidden page keeps polling", async () => {
    const document = fakeDocument("visible");
    const t = setup({ document });
    t.lp.start();
    await flush();
    document.set("hidden");
    assert.equal(t.fetch.calls[0].signal.aborted, false);
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
    assert.equal(t.fetch.calls.length, 1);
  });
});

// -- the jQuery wrapper ---------------------------------------------------------------------

/** Just enough jQuery for the wrapper: $(el), .each, .data, .trigger, .on, $.extend, $.fn. */
function fakeJQuery() {
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
  return $;
}

describe("jquery.longpoll.js", () => {
  const fakeTimers = () => {
    const clock = fakeClock();
    return { setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout };
  };
  const require = createRequire(import.meta.url);
  const wrapperPath = path.join(here, "..", "jquery.longpoll.js");

  function load() {
    const $ = fakeJQuery();
    globalThis.jQuery = $;
    delete require.cache[wrapperPath];
    require(wrapperPath);
    return $;
  }

  test("$.longPoll returns a started LongPoll", async () => {
    const $ = load();
    const fetch = fakeFetch();
    const lp = $.longPoll("/topics/news", { fetch, ...fakeTimers(), params: { a: 1 } });
    assert.ok(lp instanceof LongPoll);
    assert.equal(lp.running, true);
    await flush();
    assert.equal(fetch.calls.length, 1);
    assert.equal(fetch.calls[0].query.a, "1");
    lp.stop();
    const idle = $.longPoll("/x", { fetch, ...fakeTimers(), autoStart: false });
    assert.equal(idle.running, false);
  });

  test("$(el).longPoll triggers items, state and error events, keeps the instance in data, and stops", async () => {
    const $ = load();
    const el = { handlers: {} };
    const seen = [];
    const fetch = fakeFetch();
    fetch.queue(ok(["x"], { key: "K" }));
    $(el)
      .on("longpoll:items", (event, items, body) => seen.push(["items", items, body.key]))
      .on("longpoll:state", (event, state) => seen.push(["state", state]))
      .on("longpoll:error", (event, error) => seen.push(["error", error.status]));
    let userItems = 0;
    const returned = $(el).longPoll("/s", { fetch, ...fakeTimers(), onItems: () => userItems++ });
    assert.equal(returned.elements[0], el, "chainable");
    const lp = $(el).data("longPoll");
    assert.ok(lp instanceof LongPoll);
    await flush();
    assert.deepEqual(seen.slice(0, 2), [["state", "polling"], ["items", ["x"], "K"]]);
    assert.equal(userItems, 1, "the option callback is called as well");
    assert.equal(fetch.calls.length, 2);
    $(el).longPoll("stop");
    assert.equal(lp.running, false);
    assert.equal(fetch.calls[1].signal.aborted, true);
    assert.deepEqual(seen.at(-1), ["state", "stopped"]);
    $(el).longPoll("start");
    await flush();
    fetch.last().respond(400, { error: "bad_parameter", message: "no", param: "p" });
    await flush();
    assert.deepEqual(seen.filter(([kind]) => kind === "error"), [["error", 400]]);
    assert.equal(lp.running, false);
  });

  test("a second $(el).longPoll stops the first", async () => {
    const $ = load();
    const el = { handlers: {} };
    const fetch = fakeFetch();
    $(el).longPoll("/a", { fetch, ...fakeTimers() });
    const first = $(el).data("longPoll");
    $(el).longPoll("/b", { fetch, ...fakeTimers() });
    assert.equal(first.running, false);
    assert.notEqual($(el).data("longPoll"), first);
    await flush();
    assert.equal(fetch.maxInFlight, 1);
    $(el).longPoll("stop");
  });
});
