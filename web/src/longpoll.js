/*! longpoll.js - the browser client of the longpoll wire protocol (PROTOCOL.md).
 *
 * A classic script: it defines `LongPoll` and assigns it to `globalThis.LongPoll`.
 * For ES modules use longpoll.mjs, which imports this file and re-exports it.
 * No dependencies and no build step. It is written in ES5 so that it runs in
 * the browsers long-polling is for: it uses fetch and AbortController where
 * both exist, and XMLHttpRequest where they do not.
 *
 *   var lp = new LongPoll("/statuses/sample.json", {
 *     params: {identifier: "me", percent: 10},
 *     onItems: function (items, body) { ... },
 *     onState: function (state, info) { ... },  // polling, waiting, expired, restarted, paused, resumed, done, stopped
 *     onError: function (error) { ... }         // an answer retrying cannot fix; polling has stopped
 *   });
 *   lp.start();  ...  lp.stop();
 *
 * See web/README.md for the whole API.
 */
(function (root) {
  "use strict";

  // @include engine.js

  /**
   * fetch with an AbortController where both exist, else XMLHttpRequest.
   * Injectable (options.fetch, options.AbortController, options.XMLHttpRequest)
   * for tests; pass fetch: null to make a browser use XMLHttpRequest.
   */
  function requester(options, root) {
    var fetchImpl = options.fetch !== undefined ? options.fetch : root.fetch;
    var Controller = options.AbortController !== undefined ? options.AbortController : root.AbortController;
    var extra = options.fetchOptions || {};
    if (typeof fetchImpl === "function" && typeof Controller === "function") {
      return function (request, answer) {
        var controller = new Controller();
        var init = extend({cache: "no-store"}, extra, {method: request.method, headers: request.headers, signal: controller.signal});
        if (request.body !== undefined) init.body = request.body;
        // Called unbound from any object: window.fetch throws "Illegal invocation" otherwise.
        fetchImpl.call(undefined, request.url, init).then(function (response) {
          return response.text().then(function (text) {
            answer({status: response.status, text: text, header: function (name) { return response.headers.get(name); }});
          });
        }).then(null, function (failure) {
          answer({status: 0, failure: failure});
        });
        return function () { controller.abort(); };
      };
    }
    var XHR = options.XMLHttpRequest || root.XMLHttpRequest;
    if (typeof XHR !== "function" && typeof XHR !== "object") {
      throw new TypeError("LongPoll: neither fetch nor XMLHttpRequest is available; pass options.fetch");
    }
    return function (request, answer) {
      var xhr = new XHR();
      var finished = false;
      xhr.open(request.method, request.url, true);
      if (extra.credentials === "include") xhr.withCredentials = true;
      for (var name in request.headers) if (own(request.headers, name)) xhr.setRequestHeader(name, request.headers[name]);
      xhr.onreadystatechange = function () {
        if (xhr.readyState !== 4 || finished) return;
        finished = true;
        var status = 0;
        var text = null;
        try { // old IE throws reading these after a network error
          status = xhr.status;
          text = xhr.responseText;
        } catch (_) { /* status 0: a network error */ }
        answer({status: status, text: text, header: function (name) { return xhr.getResponseHeader(name); }});
      };
      xhr.send(request.body === undefined ? null : request.body);
      // Answered here rather than by the abort's own events, which old browsers fire unreliably.
      return function () {
        if (finished) return;
        finished = true;
        try { xhr.abort(); } catch (_) { /* already done */ }
        answer({status: 0, failure: new Error("aborted")});
      };
    };
  }

  root.LongPoll = LongPoll;
})(typeof globalThis !== "undefined" ? globalThis : this);
