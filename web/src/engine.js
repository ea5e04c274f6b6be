// The engine of both browser clients: the session's rules (key and cursor,
// one poll at a time, backoff, 410, done, page visibility, SSE streams).
//
// web/tools/build.mjs puts this text, indented, into web/longpoll.js and
// web/jquery.longpoll.js, inside each file's wrapper (web/src/longpoll.js,
// web/src/jquery.longpoll.js). How one HTTP request is made is the
// wrapper's: it gives the engine `root` (the global object) and
// `requester(options, root)`, which returns send(request, answer) -> abort().
// A poll is one send(); an SSE stream (transport "sse", or "auto" where
// EventSource exists) hands each of its events to _success() and _handle()
// the same way. ES5 only, like the files it goes into.

// Answers worth trying again after a wait; every other 4xx ends polling.
// 408: a proxy's timeout; 409: a concurrent poll on our key (we never send
// two, so another tab or a proxy did); 425/429: too early / too many.
var RETRYABLE_4XX = {408: true, 409: true, 425: true, 429: true};
var CALLBACKS = ["onItems", "onState", "onError"];
var TRANSPORTS = {poll: true, sse: true, auto: true};

function noop() {}

function own(object, name) {
  return Object.prototype.hasOwnProperty.call(object, name);
}

function extend(target) {
  for (var i = 1; i < arguments.length; i++) {
    var source = arguments[i];
    if (source) for (var name in source) if (own(source, name)) target[name] = source[name];
  }
  return target;
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function parseJson(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch (_) {
    return null;
  }
}

/** Seconds of a Retry-After header (delta-seconds or HTTP-date), or null. */
function parseRetryAfter(value, now) {
  if (value === null || value === undefined) return null;
  var text = String(value).replace(/^\s+|\s+$/g, "");
  if (text === "") return null;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  var when = Date.parse(text);
  if (isNaN(when)) return null;
  return Math.max(0, (when - now) / 1000);
}

/** A number option: its default when absent, else a finite number that passes `ok`, else a TypeError now
 * (a NaN would otherwise reach the server as "timeout=NaN", or make every backoff NaN). */
function numberOption(options, name, fallback, ok, rule) {
  var value = options[name];
  if (value === undefined) return fallback;
  var number = typeof value === "number" ? value : typeof value === "string" && /\S/.test(value) ? Number(value) : NaN;
  if (!isFinite(number) || !ok(number)) {
    throw new TypeError("LongPoll: " + name + " must be " + rule + ", not " +
      (typeof value === "string" ? '"' + value + '"' : String(value)));
  }
  return number;
}

/** An HTTP error answer, carrying the server's JSON fields (error, message, param, ...). */
function LongPollError(status, body) {
  var fields = isObject(body) ? body : {};
  this.message = typeof fields.message === "string" ? fields.message : "HTTP " + status;
  for (var name in fields) {
    if (own(fields, name) && name !== "message" && name !== "name" && name !== "stack") this[name] = fields[name];
  }
  if (typeof this.error !== "string") this.error = status ? "http_" + status : "network";
  this.status = status;
  this.body = body === undefined ? null : body;
  if (Error.captureStackTrace) Error.captureStackTrace(this, LongPollError);
}
LongPollError.prototype = Object.create(Error.prototype);
LongPollError.prototype.constructor = LongPollError;
LongPollError.prototype.name = "LongPollError";

/**
 * @param {string} url  the long-poll endpoint, e.g. "/statuses/sample.json"
 * @param {object} [options]  see web/README.md
 */
function LongPoll(url, options) {
  if (typeof url !== "string" || url === "") throw new TypeError("LongPoll: url must be a non-empty string");
  var o = options || {};
  this.url = url;
  this.method = String(o.method || "GET").toUpperCase();
  if (this.method !== "GET" && this.method !== "POST") throw new TypeError("LongPoll: method must be GET or POST");
  this.params = extend({}, o.params);
  this.timeout = numberOption(o, "timeout", 25, function (n) { return n >= 0; }, "a number of seconds, 0 or more");
  this.max = numberOption(o, "max", 100, function (n) { return n >= 1 && n % 1 === 0; }, "a whole number, 1 or more");
  this.minBackoff = numberOption(o, "minBackoff", 500, function (n) { return n >= 0; }, "a number of ms, 0 or more");
  this.maxBackoff = numberOption(o, "maxBackoff", 30000, function (n) { return n >= 0; }, "a number of ms, 0 or more");
  this.headers = extend({}, o.headers);
  this.jitter = o.jitter || "equal";
  if (this.jitter !== "full" && this.jitter !== "equal" && this.jitter !== "none") {
    throw new TypeError('LongPoll: jitter must be "full", "equal" or "none"');
  }
  this.pauseWhenHidden = Boolean(o.pauseWhenHidden);
  this.transport = o.transport || "poll";
  if (!TRANSPORTS[this.transport]) throw new TypeError('LongPoll: transport must be "poll", "sse" or "auto"');
  this._EventSource = o.EventSource !== undefined ? o.EventSource : root.EventSource;
  // What EventSource cannot do: POST, or send headers of its own.
  var streamable = this.method === "GET" && Object.keys(this.headers).length === 0;
  if (this.transport === "sse" && (!streamable || typeof this._EventSource !== "function")) {
    throw new TypeError("LongPoll: transport \"sse\" needs EventSource, GET and no headers; \"auto\" falls back to polling");
  }
  this._streaming = this.transport !== "poll" && streamable && typeof this._EventSource === "function";
  this._streamed = false;  // an SSE event ever arrived: the endpoint streams
this._probing = false;   // a stream failed before it opened: the next request is a poll that learns why
  this._withCredentials = Boolean((o.fetchOptions && o.fetchOptions.credentials === "include") ||
    (o.ajaxOptions && o.ajaxOptions.xhrFields && o.ajaxOptions.xhrFields.withCredentials));
  this.quickStart = Boolean(o.quickStart);
  for (var i = 0; i < CALLBACKS.length; i++) {
    var callback = o[CALLBACKS[i]];
    if (callback !== undefined && callback !== null && typeof callback !== "function") {
      throw new TypeError("LongPoll: " + CALLBACKS[i] + " must be a function");
    }
    this[CALLBACKS[i]] = callback || noop;
  }

  var st = o.setTimeout || root.setTimeout;
  var ct = o.clearTimeout || root.clearTimeout;
  this._setTimeout = function (fn, ms) { return st.call(root, fn, ms); };
  this._clearTimeout = function (handle) { ct.call(root, handle); };
  this._random = o.random || Math.random;
  this._now = o.now || Date.now;
  this._document = o.document === undefined ? root.document : o.document;
  this._send = requester(o, root);

  this._key = o.key ? String(o.key) : null;
  this._cursor = this._key !== null && o.cursor !== undefined && o.cursor !== null ? String(o.cursor) : null;
  this._running = false;
  this._paused = false;
  this._state = "idle";
  this._attempt = 0;       // consecutive failures; 0 after a session answers twice in a row
  this._request = null;    // the one poll in flight: {abort, cancelled, timedOut, settled}
  this._timer = null;      // the scheduled next poll
  this._expiredAt = null;  // set on 410 until the new session answers
  var self = this;
  this._onVisibility = function () { self._visibilityChanged(); };
  this._listening = false;
}

// Read-only views of the loop's state: key, cursor, running, paused, state.
function readOnly(name, field) {
  Object.defineProperty(LongPoll.prototype, name, {get: function () { return this[field]; }});
}
readOnly("key", "_key");
readOnly("cursor", "_cursor");
readOnly("running", "_running");
readOnly("paused", "_paused");
readOnly("state", "_state");
// "sse" while batches come as Server-Sent Events, else "poll".
Object.defineProperty(LongPoll.prototype, "transportInUse", {get: function () { return this._streaming ? "sse" : "poll"; }});

/** Start polling (a no-op while running). Key and cursor are kept from before a stop(). */
LongPoll.prototype.start = function () {
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
};

/** Stop polling: abort the poll in flight and cancel any scheduled one. Key and cursor are kept. */
LongPoll.prototype.stop = function () {
  var wasRunning = this._running;
  this._running = false;
  this._paused = false;
  this._cancelTimer();
  this._abortRequest("stopped");
  this._listen(false);
  if (wasRunning) this._setState("stopped", {reason: "stop"});
  return this;
};

/** Forget key and cursor, so the next poll starts a new session (call it while stopped). */
LongPoll.prototype.reset = function () {
  this._key = null;
  this._cursor = null;
  return this;
};

/** The wait before retry number `attempt` (1, 2, ...), without Retry-After. */
LongPoll.prototype.backoff = function (attempt) {
  var ceiling = Math.min(this.maxBackoff, this.minBackoff * Math.pow(2, Math.max(0, attempt - 1)));
  var r = Math.min(1, Math.max(0, Number(this._random()) || 0));
  if (this.jitter === "full") return r * ceiling;
  if (this.jitter === "equal") return ceiling / 2 + r * ceiling / 2;
  return ceiling;
};

// -- the loop -----------------------------------------------------------

/** Running, not paused, and nothing in flight or scheduled. */
LongPoll.prototype._idle = function () {
  return this._running && !this._paused && !this._request && this._timer === null;
};

LongPoll.prototype._kick = function () {
  if (this._idle()) this._poll();
};

LongPoll.prototype._schedule = function (delay) {
  var self = this;
  this._cancelTimer();
  this._timer = this._setTimeout(function () {
    self._timer = null;
    self._kick();
  }, Math.max(0, delay));
};

LongPoll.prototype._cancelTimer = function () {
  if (this._timer !== null) {
    this._clearTimeout(this._timer);
    this._timer = null;
  }
};

LongPoll.prototype._abortRequest = function (why) {
  var request = this._request;
  if (request && !request.cancelled) {
    request.cancelled = why;
    request.abort();
  }
};

/** Seconds the next poll asks the server to hold it: 0 for a new session with quickStart. */
LongPoll.prototype._holdFor = function () {
  return this.quickStart && this._key === null ? 0 : this.timeout;
};

/** {method, url, headers, body}: the poll for the current key and cursor. */
LongPoll.prototype._buildRequest = function (holdFor) {
  var fields = extend({}, this.params);
  if (this._key !== null) {
    fields.key = this._key;
    if (this._cursor !== null) fields.cursor = this._cursor;
  }
  if (holdFor !== null) fields.timeout = holdFor;
  fields.max = this.max;
  var request = {method: this.method, url: this.url, headers: extend({Accept: "application/json"}, this.headers)};
  var name;
  if (this.method === "GET") {
    var query = [];
    for (name in fields) {
      var value = fields[name];
      if (!own(fields, name) || value === undefined || value === null) continue;
      query.push(encodeURIComponent(name) + "=" + encodeURIComponent(Array.isArray(value) ? value.join(",") : String(value)));
    }
    if (query.length) request.url += (request.url.indexOf("?") >= 0 ? "&" : "?") + query.join("&");
  } else {
    for (name in fields) if (own(fields, name) && fields[name] === undefined) delete fields[name];
    request.headers["Content-Type"] = "application/json";
    request.body = JSON.stringify(fields);
  }
  return request;
};

LongPoll.prototype._poll = function () {
  var self = this;
  this._setState("polling", {key: this._key, cursor: this._cursor, attempt: this._attempt, transport: this.transportInUse});
  if (!this._idle()) return; // onState stopped or paused us (or started a poll of its own)
  var probe = this._probing;
  this._probing = false;
  if (this._streaming && !probe) {
    this._stream();
    return;
  }
  var holdFor = probe ? 0 : this._holdFor(); // a probe only asks what the stream was answered: at once
  var limit = holdFor + 10;
  var request = {abort: noop, cancelled: false, timedOut: false, settled: false};
  this._request = request;
  var guard = this._setTimeout(function () {
    request.timedOut = true;
    request.abort();
  }, limit * 1000);
  function settle(answer) {
    if (request.settled) return;
    request.settled = true;
    self._clearTimeout(guard);
    if (self._request === request) self._request = null;
    if (request.cancelled) {
      // stop() or a hidden page ended this poll: its answer, if any, is not
      // taken (the cursor stays, so the server sends that batch again).
      self._kick();
    } else if (!answer.status) {
      var error = new LongPollError(0, {
        error: request.timedOut ? "timeout" : "network",
        message: request.timedOut ? "no answer within " + limit + " s" : String(answer.failure && answer.failure.message || answer.failure || "network error")
      });
      error.cause = answer.failure;
      self._retry(error, null);
    } else {
      self._handle(answer.status, parseJson(answer.text), answer.header, probe);
    }
  }
  try {
    request.abort = this._send(this._buildRequest(holdFor), settle);
  } catch (failure) { // e.g. a URL that XMLHttpRequest.open() refuses
    settle({status: 0, failure: failure});
  }
};

/**
 * One SSE stream of the session, from its key and cursor (in the URL: EventSource sends Last-Event-ID
 * itself only when it reconnects on its own, which it does after a stream ends). Each event is a batch,
 * as a poll's answer; "expired" and "error" events are the answers a poll would have had.
 *
 * An answer the server gives before a stream starts (400, 401, 403, 410, 429, 5xx: anything but a 200
 * event stream) reaches EventSource only as a failed connection, without status or body. So a stream
 * that fails before it opened is followed by one poll with the same parameters, key and cursor and
 * timeout=0 (the probe), whose answer is handled as any poll's: an error stops, a 410 starts a new
 * session, a 429 or 5xx is retried after the backoff. If the probe is answered with a batch, the
 * endpoint polls but the stream did not come through: under "auto", until an event ever came, it
 * polls from then on; otherwise the stream is tried again after the backoff.
 */
LongPoll.prototype._stream = function () {
  var self = this;
  var request = {abort: noop, cancelled: false, timedOut: false, settled: false};
  var source = null;
  var opened = false;  // the server answered with an event stream
  var got = false;     // and sent an event on it
  this._request = request;
  function settle(next) {
    if (request.settled) return;
    request.settled = true;
    request.abort();
    if (self._request === request) self._request = null;
    if (request.cancelled) self._kick();
    else next();
  }
  function batch(event) {
    if (request.settled) return;
    var body = parseJson(event.data);
    if (!isObject(body) || typeof body.key !== "string" || !Array.isArray(body.items)) {
      settle(function () {
        self._retry(new LongPollError(200, {error: "bad_response", message: "the event is not a long-poll batch"}), null);
      });
      return;
    }
    got = self._streamed = true;
    // The last event of a stream that ends here: done, or the server's "come back in retry_ms" (its
    // hold gate was full); _success then stops, or waits that long, as after a poll.
    if (body.state === "done" || Number(body.retry_ms) > 0) settle(noop);
    self._success(body);
  }
  function failed(event) {
    var body = parseJson(event && event.data);
    settle(function () {
      if (isObject(body)) {  // the server's own error event: what a poll would have answered
        self._handle(Number(body.status) || 500, body, null);
      } else if (got) {       // a stream that delivered and ended (its time is up, the server went away)
        self._kick();
      } else if (!opened) {   // no stream at all: what was the answer?
        self._probing = true;
        self._kick();
      } else if (self.transport === "auto" && !self._streamed) {
        self._streaming = false;  // this endpoint, or something between, does not stream: poll
        self._kick();
      } else {
        self._retry(new LongPollError(0, {error: "network", message: "the event stream failed"}), null);
      }
    });
  }
  try {
    source = new this._EventSource(this._buildRequest(null).url, {withCredentials: this._withCredentials});
  } catch (failure) {
    settle(function () { self._retry(new LongPollError(0, {error: "network", message: String(failure && failure.message || failure)}), null); });
    return;
  }
  // A closed EventSource says nothing more, so closing it (stop(), a hidden page) also settles the stream.
  request.abort = function () {
    source.close();
    settle(noop);
  };
  source.onmessage = batch;
  source.addEventListener("open", function () {
    // The server took the stream: the session answers, so the backoff starts over. A quiet stream that
    // the server ends at its time limit, with no event, is then opened again after the first step.
    if (request.settled) return;
    opened = true;
    self._attempt = 0;
  }, false);
  source.addEventListener("done", batch, false);
  source.addEventListener("expired", function (event) {
    settle(function () { self._handle(410, parseJson(event.data), null); });
  }, false);
  source.addEventListener("error", failed, false);
};

/** One answer: status, its parsed JSON body (or null), header(name); probe: it answers a probe (see _stream). */
LongPoll.prototype._handle = function (status, body, header, probe) {
  if (status >= 200 && status < 300) {
    if (!isObject(body) || typeof body.key !== "string" || !Array.isArray(body.items)) {
      this._retry(new LongPollError(status, {error: "bad_response", message: "the answer is not a long-poll batch"}), null);
    } else {
      this._success(body, probe);
    }
    return;
  }
  var error = new LongPollError(status, body);
  if (status === 410) {
    var hadKey = this._key !== null;
    this._key = null;
    this._cursor = null;
    this._setState("expired", {error: error, status: status});
    if (hadKey) {
      this._expiredAt = this._now();
      this._kick(); // a new session, at once; the backoff is kept until it proves itself
    } else {
      this._retry(error, header); // 410 without a key: do not spin
    }
    return;
  }
  if (status === 500 && error.error === "generator_failed") {
    // The server ended the session: retrying gets 410 and a new session
    // whose generator fails the same way, over and over.
    this._key = null;
    this._cursor = null;
    this._end(error);
    return;
  }
  if (status >= 500 || RETRYABLE_4XX[status] || status < 200 || (status >= 300 && status < 400)) {
    this._retry(error, header);
    return;
  }
  this._end(error); // 400, 401, 403, 404, 405, 413, ...: the same request would fail again
};

LongPoll.prototype._success = function (body, probe) {
  // Only a session that answers again proves itself: the first answer of a
  // new one does not reset the backoff, so 5xx -> 410 -> new session -> 5xx
  // waits longer each round instead of restarting the session at once forever.
  // Nor does a probe's: its stream failed all the same.
  var continued = this._key !== null && body.key === this._key;
  if (continued && !probe) this._attempt = 0;
  var restarted = this._expiredAt !== null && !continued;
  this._key = body.key;
  if (typeof body.cursor === "string" || typeof body.cursor === "number") this._cursor = String(body.cursor);
  if (restarted) {
    this._expiredAt = null;
    this._setState("restarted", {key: body.key});
  }
  if (body.items.length > 0) this._call(this.onItems, [body.items, body]);
  if (body.state === "done") {
    this._running = false;
    this._key = null;
    this._cursor = null;
    this._cancelTimer();
    this._listen(false);
    this._setState("done", {body: body});
    return;
  }
  if (!this._idle()) return; // a callback stopped (or stopped and restarted) us
  var retryMs = Number(body.retry_ms);
  if (body.retry_ms !== undefined && body.retry_ms !== null && isFinite(retryMs) && retryMs > 0) {
    this._setState("waiting", {delay: retryMs, attempt: 0, reason: "retry_ms"});
    if (this._idle()) this._schedule(retryMs);
    return;
  }
  if (probe && this.transport === "auto" && !this._streamed) {
    this._streaming = false;  // polls come through and streams do not (a proxy, a server without streams): poll
  } else if (probe) {
    this._retry(new LongPollError(0, {error: "network", message: "the event stream failed, though a poll was answered"}), null);
    return;
  }
  this._kick();
};

/** Back off after a failure: exponential, jittered, capped; at least Retry-After. */
LongPoll.prototype._retry = function (error, header) {
  if (!this._running) return;
  this._attempt += 1;
  var delay = this.backoff(this._attempt);
  var retryAfter = header ? parseRetryAfter(header("Retry-After"), this._now()) : null;
  if (retryAfter !== null) delay = Math.max(delay, retryAfter * 1000);
  this._setState("waiting", {delay: delay, attempt: this._attempt, error: error, status: error.status, retryAfter: retryAfter});
  if (!this._idle()) return; // onState may have stopped (or restarted) us
  this._schedule(delay);
};

/** An answer that retrying cannot fix: stop, then tell onError. */
LongPoll.prototype._end = function (error) {
  this._running = false;
  this._cancelTimer();
  this._listen(false);
  this._setState("stopped", {reason: "error", error: error, status: error.status});
  this._call(this.onError, [error]); // last, so that it may start() again
};

// -- page visibility ---------------------------------------------------

/** The document's visibility property and event: standard, or the prefixed ones of 2012-2013 browsers. */
LongPoll.prototype._visibilityApi = function () {
  var doc = this._document;
  if (!doc || typeof doc.addEventListener !== "function") return null;
  if (doc.visibilityState !== undefined) return {property: "visibilityState", event: "visibilitychange"};
  if (doc.webkitVisibilityState !== undefined) return {property: "webkitVisibilityState", event: "webkitvisibilitychange"};
  return null;
};

LongPoll.prototype._hidden = function () {
  var api = this._visibilityApi();
  return Boolean(api && this._document[api.property] === "hidden");
};

LongPoll.prototype._listen = function (on) {
  var api = this.pauseWhenHidden ? this._visibilityApi() : null;
  if (!api) return;
  if (on && !this._listening) {
    this._document.addEventListener(api.event, this._onVisibility, false);
    this._listening = true;
  } else if (!on && this._listening) {
    this._document.removeEventListener(api.event, this._onVisibility, false);
    this._listening = false;
  }
};

LongPoll.prototype._visibilityChanged = function () {
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
};

// -- callbacks ----------------------------------------------------------

LongPoll.prototype._setState = function (state, info) {
  // "polling" is reported when entered, not again for every poll in a row.
  if (state === "polling" && this._state === "polling") return;
  this._state = state;
  this._call(this.onState, [state, info || {}]);
};

LongPoll.prototype._call = function (fn, args) {
  try {
    fn.apply(this, args);
  } catch (error) {
    // A failing callback must not break the loop; show it where errors go.
    if (typeof root.reportError === "function") root.reportError(error);
    else if (root.console) root.console.error(error);
  }
};

LongPoll.LongPollError = LongPollError;
LongPoll.parseRetryAfter = parseRetryAfter;
