/*! longpoll.js - the browser client of the longpoll wire protocol (PROTOCOL.md).
 *
 * A classic script: it defines `LongPoll` and assigns it to `globalThis.LongPoll`.
 * For ES modules use longpoll.mjs, which imports this file and re-exports it.
 * No dependencies and no build step; it needs fetch, AbortController and Promise.
 *
 *   const lp = new LongPoll("/statuses/sample.json", {
 *     params: {identifier: "me", percent: 10},
 *     onItems(items, body) { ... },
 *     onState(state, info) { ... },   // polling, waiting, expired, restarted, paused, done, stopped
 *     onError(error) { ... },         // a 4xx that retrying cannot fix; polling has stopped
 *   });
 *   lp.start();  ...  lp.stop();
 *
 * See web/README.md for the whole API.
 */
(function (root) {
  "use strict";

  // Answers worth trying again after a wait; every other 4xx ends polling.
  // 408: a proxy's timeout; 409: a concurrent poll on our key (we never send
  // two, so another tab or a proxy did); 425/429: too early / too many.
  const RETRYABLE_4XX = new Set([408, 409, 425, 429]);

  function noop() {}

  /** Seconds of a Retry-After header (delta-seconds or HTTP-date), or null. */
  function parseRetryAfter(value, now) {
    if (value === null || value === undefined) return null;
    const text = String(value).trim();
    if (text === "") return null;
    if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
    const when = Date.parse(text);
    if (Number.isNaN(when)) return null;
    return Math.max(0, (when - now) / 1000);
  }

  function headerOf(response, name) {
    const headers = response && response.headers;
    if (!headers) return null;
    if (typeof headers.get === "function") return headers.get(name);
    const wanted = name.toLowerCase();
    for (const own of Object.keys(headers)) {
      if (own.toLowerCase() === wanted) return headers[own];
    }
    return null;
  }

  async function readJson(response) {
    let text;
    if (typeof response.text === "function") {
      text = await response.text();
    } else if (typeof response.json === "function") {
      return response.json();
    } else {
      return null;
    }
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      return null;
    }
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  /** An HTTP error answer, carrying the server's JSON fields (error, message, param, ...). */
  class LongPollError extends Error {
    constructor(status, body) {
      const fields = isObject(body) ? body : {};
      super(typeof fields.message === "string" ? fields.message : `HTTP ${status}`);
      this.name = "LongPollError";
      for (const name of Object.keys(fields)) {
        if (name !== "message" && name !== "name" && name !== "stack") this[name] = fields[name];
      }
      if (typeof this.error !== "string") this.error = status ? "http_" + status : "network";
      this.status = status;
      this.body = body === undefined ? null : body;
    }
  }

  class LongPoll {
    /**
     * @param {string} url  the long-poll endpoint, e.g. "/statuses/sample.json"
     * @param {object} [options]  see web/README.md
     */
    constructor(url, options = {}) {
      if (typeof url !== "string" || url === "") throw new TypeError("LongPoll: url must be a non-empty string");
      const o = options || {};
      this.url = url;
      this.method = String(o.method || "GET").toUpperCase();
      if (this.method !== "GET" && this.method !== "POST") throw new TypeError("LongPoll: method must be GET or POST");
      this.params = Object.assign({}, o.params || {});
      this.timeout = o.timeout === undefined ? 25 : Number(o.timeout);
      this.max = o.max === undefined ? 100 : Number(o.max);
      this.headers = Object.assign({}, o.headers || {});
      this.fetchOptions = Object.assign({}, o.fetchOptions || {});
      this.minBackoff = o.minBackoff === undefined ? 500 : Number(o.minBackoff);
      this.maxBackoff = o.maxBackoff === undefined ? 30000 : Number(o.maxBackoff);
      this.jitter = o.jitter || "equal";
      if (!["full", "equal", "none"].includes(this.jitter)) throw new TypeError('LongPoll: jitter must be "full", "equal" or "none"');
      this.pauseWhenHidden = Boolean(o.pauseWhenHidden);
      this.quickStart = Boolean(o.quickStart);
      this.onItems = o.onItems || noop;
      this.onState = o.onState || noop;
      this.onError = o.onError || noop;

      const fetchImpl = o.fetch || root.fetch;
      if (typeof fetchImpl !== "function") throw new TypeError("LongPoll: no fetch available; pass options.fetch");
      // Call fetch unbound from any object: window.fetch throws "Illegal invocation" otherwise.
      this._fetch = (input, init) => fetchImpl.call(undefined, input, init);
      this._random = o.random || Math.random;
      const st = o.setTimeout || root.setTimeout;
      const ct = o.clearTimeout || root.clearTimeout;
      this._setTimeout = (fn, ms) => st.call(undefined, fn, ms);
      this._clearTimeout = (handle) => ct.call(undefined, handle);
      this._now = o.now || Date.now;
      this._document = o.document === undefined ? root.document : o.document;
      this._AbortController = o.AbortController || root.AbortController;

      this._key = o.key ? String(o.key) : null;
      this._cursor = this._key !== null && o.cursor !== undefined && o.cursor !== null ? String(o.cursor) : null;
      this._running = false;
      this._paused = false;
      this._state = "idle";
      this._attempt = 0;       // consecutive failures; 0 after a success
      this._request = null;    // the one poll in flight: {controller, cancelled, timedOut}
      this._timer = null;      // the scheduled next poll
      this._expiredAt = null;  // set on 410 until the new session answers
      this._onVisibility = () => this._visibilityChanged();
      this._listening = false;
    }

    /** The session key, or null before the first answer (and after 410 or done). */
    get key() { return this._key; }
    /** The cursor of the last answer received, or null. */
    get cursor() { return this._cursor; }
    /** True between start() and stop() (or "done", or an error that ends polling), paused or not. */
    get running() { return this._running; }
    /** True while paused because the page is hidden (pauseWhenHidden). */
    get paused() { return this._paused; }
    /** The last state passed to onState ("idle" before start()). */
    get state() { return this._state; }

    /** Start polling (a no-op while running). Key and cursor are kept from before a stop(). */
    start() {
      if (this._running) return this;
      this._running = true;
      this._paused = false;
      this._attempt = 0;
      this._listen(true);
      if (this.pauseWhenHidden && this._hidden()) {
        this._paused = true;
        this._setState("paused", {reason: "hidden"});
        return this;
      }
      this._kick();
      return this;
    }

    /** Stop polling: abort the poll in flight and cancel any scheduled one. Key and cursor are kept. */
    stop() {
      const wasRunning = this._running;
      this._running = false;
      this._paused = false;
      this._cancelTimer();
      this._abortRequest("stopped");
      this._listen(false);
      if (wasRunning) this._setState("stopped", {reason: "stop"});
      return this;
    }

    /** Forget key and cursor, so the next poll starts a new session (call it while stopped). */
    reset() {
      this._key = null;
      this._cursor = null;
      return this;
    }

    // -- the loop -----------------------------------------------------------

    /** Running, not paused, and nothing in flight or scheduled. */
    _idle() {
      return this._running && !this._paused && !this._request && this._timer === null;
    }

    /** Poll now if running, visible, and nothing is in flight or scheduled. */
    _kick() {
      if (this._idle()) this._poll();
    }

    _schedule(delay) {
      this._cancelTimer();
      this._timer = this._setTimeout(() => {
        this._timer = null;
        this._kick();
      }, Math.max(0, delay));
    }

    _cancelTimer() {
      if (this._timer !== null) {
        this._clearTimeout(this._timer);
        this._timer = null;
      }
    }

    _abortRequest(why) {
      const request = this._request;
      if (request && !request.cancelled) {
        request.cancelled = why;
        try { request.controller.abort(); } catch (_) { /* already done */ }
      }
    }

    /** Seconds the next poll asks the server to hold it: 0 for a new session with quickStart. */
    _holdFor() {
      return this.quickStart && this._key === null ? 0 : this.timeout;
    }

    _buildRequest(holdFor) {
      const fields = Object.assign({}, this.params);
      if (this._key !== null) {
        fields.key = this._key;
        if (this._cursor !== null) fields.cursor = this._cursor;
      }
      fields.timeout = holdFor;
      fields.max = this.max;
      const headers = Object.assign({Accept: "application/json"}, this.headers);
      const init = Object.assign({cache: "no-store"}, this.fetchOptions, {method: this.method, headers});
      let url = this.url;
      if (this.method === "GET") {
        const query = new URLSearchParams();
        for (const name of Object.keys(fields)) {
          const value = fields[name];
          if (value === undefined || value === null) continue;
          query.append(name, Array.isArray(value) ? value.join(",") : String(value));
        }
        const text = query.toString();
        if (text) url += (url.includes("?") ? "&" : "?") + text;
      } else {
        for (const name of Object.keys(fields)) if (fields[name] === undefined) delete fields[name];
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(fields);
      }
      return {url, init};
    }

    async _poll() {
      const controller = new this._AbortController();
      const request = {controller, cancelled: false, timedOut: false};
      this._request = request;
      const holdFor = this._holdFor();
      const {url, init} = this._buildRequest(holdFor);
      init.signal = controller.signal;
      const guard = this._setTimeout(() => {
        request.timedOut = true;
        try { controller.abort(); } catch (_) { /* already done */ }
      }, (Math.max(0, Number(holdFor) || 0) + 10) * 1000);
      this._setState("polling", {key: this._key, cursor: this._cursor, attempt: this._attempt});

      let response = null;
      let body = null;
      let failure = null;
      try {
        response = await this._fetch(url, init);
        body = await readJson(response);
      } catch (error) {
        failure = error;
      } finally {
        this._clearTimeout(guard);
        if (this._request === request) this._request = null;
      }

      if (request.cancelled) {
        // stop() or a hidden page ended this poll: its answer, if any, is not
        // taken (the cursor stays, so the server sends that batch again).
        this._kick();
        return;
      }
      if (failure || !response) {
        const error = new LongPollError(0, {
          error: request.timedOut ? "timeout" : "network",
          message: request.timedOut ? "no answer within " + ((Number(holdFor) || 0) + 10) + " s" : String((failure && failure.message) || failure),
        });
        error.cause = failure;
        this._retry(error, null);
        return;
      }
      this._handle(response, body);
    }

    _handle(response, body) {
      const status = response.status;
      if (status >= 200 && status < 300) {
        if (!isObject(body) || typeof body.key !== "string" || !Array.isArray(body.items)) {
          this._retry(new LongPollError(status, {error: "bad_response", message: "the answer is not a long-poll batch"}), null);
          return;
        }
        this._success(body);
        return;
      }
      const error = new LongPollError(status, body);
      if (status === 410) {
        const hadKey = this._key !== null;
        this._key = null;
        this._cursor = null;
        this._setState("expired", {error, status});
        if (hadKey) {
          this._expiredAt = this._now();
          this._kick(); // a new session, at once
        } else {
          this._retry(error, response); // 410 without a key: do not spin
        }
        return;
      }
      if (status >= 500 || RETRYABLE_4XX.has(status) || status < 200 || (status >= 300 && status < 400)) {
        this._retry(error, response);
        return;
      }
      // 400, 401, 403, 404, 405, 413, ...: the same request would fail again.
      this._running = false;
      this._listen(false);
      this._setState("stopped", {reason: "error", error, status});
      this._call(this.onError, error); // last, so that it may start() again
    }

    _success(body) {
      this._attempt = 0;
      const restarted = this._expiredAt !== null && body.key !== this._key;
      this._key = body.key;
      if (typeof body.cursor === "string" || typeof body.cursor === "number") this._cursor = String(body.cursor);
      if (restarted) {
        this._expiredAt = null;
        this._setState("restarted", {key: body.key});
      }
      const done = body.state === "done";
      if (body.items.length > 0) this._call(this.onItems, body.items, body);
      if (done) {
        this._running = false;
        this._key = null;
        this._cursor = null;
        this._cancelTimer();
        this._listen(false);
        this._setState("done", {body});
        return;
      }
      if (!this._idle()) return; // a callback stopped (or stopped and restarted) us
      const retryMs = Number(body.retry_ms);
      if (body.retry_ms !== undefined && body.retry_ms !== null && Number.isFinite(retryMs) && retryMs > 0) {
        this._setState("waiting", {delay: retryMs, attempt: 0, reason: "retry_ms"});
        this._schedule(retryMs);
        return;
      }
      this._kick();
    }

    /** Back off after a failure: exponential, jittered, capped; at least Retry-After. */
    _retry(error, response) {
      if (!this._running) return;
      this._attempt += 1;
      let delay = this.backoff(this._attempt);
      const retryAfter = response ? parseRetryAfter(headerOf(response, "Retry-After"), this._now()) : null;
      if (retryAfter !== null) delay = Math.max(delay, retryAfter * 1000);
      this._setState("waiting", {delay, attempt: this._attempt, error, status: error.status, retryAfter});
      if (!this._idle()) return; // onState may have stopped (or restarted) us
      this._schedule(delay);
    }

    /** The wait before retry number `attempt` (1, 2, ...), without Retry-After. */
    backoff(attempt) {
      const ceiling = Math.min(this.maxBackoff, this.minBackoff * Math.pow(2, Math.max(0, attempt - 1)));
      const r = Math.min(1, Math.max(0, Number(this._random()) || 0));
      if (this.jitter === "full") return r * ceiling;
      if (this.jitter === "equal") return ceiling / 2 + r * ceiling / 2;
      return ceiling;
    }

    // -- page visibility ---------------------------------------------------

    _hidden() {
      const doc = this._document;
      return Boolean(doc && doc.visibilityState === "hidden");
    }

    _listen(on) {
      const doc = this._document;
      if (!this.pauseWhenHidden || !doc || typeof doc.addEventListener !== "function") return;
      if (on && !this._listening) {
        doc.addEventListener("visibilitychange", this._onVisibility);
        this._listening = true;
      } else if (!on && this._listening) {
        doc.removeEventListener("visibilitychange", this._onVisibility);
        this._listening = false;
      }
    }

    _visibilityChanged() {
      if (!this._running) return;
      if (this._hidden()) {
        if (this._paused) return;
        this._paused = true;
        this._cancelTimer();
        this._abortRequest("paused");
        this._setState("paused", {reason: "hidden"});
      } else if (this._paused) {
        this._paused = false;
        this._attempt = 0;
        this._setState("resumed", {});
        this._kick();
      }
    }

    // -- callbacks ----------------------------------------------------------

    _setState(state, info) {
      // "polling" is reported when entered, not again for every poll in a row.
      if (state === "polling" && this._state === "polling") return;
      this._state = state;
      this._call(this.onState, state, info || {});
    }

    _call(fn, ...args) {
      try {
        fn.apply(this, args);
      } catch (error) {
        // A failing callback must not break the loop; show it where errors go.
        if (typeof root.reportError === "function") root.reportError(error);
        else if (root.console) root.console.error(error);
      }
    }
  }

  LongPoll.LongPollError = LongPollError;
  LongPoll.parseRetryAfter = parseRetryAfter;
  root.LongPoll = LongPoll;
})(typeof globalThis !== "undefined" ? globalThis : this);
