/*! jquery.longpoll.js - the longpoll wire protocol (PROTOCOL.md) on jQuery's $.ajax.
 *
 * Needs jQuery (1.12, 3.x or 4.x) and nothing else: not longpoll.js, not
 * fetch, not Promise. Written in ES5, for the pages long-polling is for:
 * jQuery intranet apps, old embedded browsers and WebViews, kiosks.
 *
 *   <script src="jquery.min.js"></script>
 *   <script src="/web/jquery.longpoll.js"></script>
 *
 *   // a started poller; the options are LongPoll's (web/README.md), plus autoStart and ajaxOptions
 *   var lp = $.longPoll("/topics/news", {onItems: function (items, body) { ... }});
 *
 *   // the same as a jQuery Deferred: progress per batch, done at "done", fail on an error that stops it
 *   $.longPoll("/topics/news")
 *     .progress(function (items, body) { ... })
 *     .done(function (body) { ... })
 *     .fail(function (error) { ... });
 *
 *   // one bound to an element: its items, states and errors are also jQuery events
 *   $("#feed")
 *     .on("longpoll:items", function (event, items, body) { ... })
 *     .on("longpoll:state", function (event, state, info) { ... })
 *     .on("longpoll:error", function (event, error) { ... })
 *     .longPoll("/statuses/sample.json", {params: {identifier: "me", percent: 10}});
 *   $("#feed").data("longPoll");      // the poller
 *   $("#feed").longPoll("stop");      // stops it ("start" starts it again)
 */
(function (root) {
  "use strict";

  var $ = root.jQuery;
  if (!$ || !$.fn || typeof $.ajax !== "function") throw new Error("jquery.longpoll.js: load jQuery (not its slim build) first");

  // @include engine.js

  /** $.ajax, with options.ajaxOptions (xhrFields, crossDomain, ...) under the poll's own settings. */
  function requester(options) {
    var extra = options.ajaxOptions || {};
    return function (request, answer) {
      var finished = false;
      var jqXHR = $.ajax(extend({}, extra, {
        url: request.url,
        type: request.method,
        headers: request.headers,
        data: request.body,
        processData: false,
        dataType: "text",   // parsed here: jQuery 1.x fails an empty or non-JSON body as "parsererror"
        timeout: 0,         // the poll has its own limit; a page-wide $.ajaxSetup timeout would cut held polls
        global: false,      // a held poll must not keep ajaxStart/ajaxStop spinners on forever
        complete: function (xhr) {
          if (finished) return;
          finished = true;
          answer({status: xhr.status, text: xhr.responseText, header: function (name) { return xhr.getResponseHeader(name); }});
        }
      }));
      return function () {
        if (finished) return;
        finished = true;
        jqXHR.abort();
        answer({status: 0, failure: new Error("aborted")});
      };
    };
  }

  /** Call `first` (the user's callback, if any), then `then`, even if `first` throws. */
  function chain(first, then) {
    if (first !== undefined && first !== null && typeof first !== "function") return first; // for LongPoll to refuse
    return function () {
      try {
        if (first) first.apply(this, arguments);
      } finally {
        then.apply(this, arguments);
      }
    };
  }

  /**
   * $.longPoll(url, options): a poller, started unless options.autoStart is false.
   * It is also a jQuery Deferred's face: .progress(items, body) for each batch,
   * .done(body) when the stream ends, .fail(error) when an error stops it;
   * .promise() for $.when() and .then(). The Deferred settles once, at the first end.
   */
  function create(url, options) {
    var opts = extend({}, options);
    var autoStart = opts.autoStart !== false;
    delete opts.autoStart;
    var deferred = $.Deferred();
    var lp;
    opts.onItems = chain(opts.onItems, function (items, body) { deferred.notifyWith(lp, [items, body]); });
    opts.onState = chain(opts.onState, function (state, info) { if (state === "done") deferred.resolveWith(lp, [info.body]); });
    opts.onError = chain(opts.onError, function (error) { deferred.rejectWith(lp, [error]); });
    lp = new LongPoll(url, opts);
    $.each(["done", "fail", "progress", "always"], function (_, name) {
      lp[name] = function () {
        deferred[name].apply(deferred, arguments);
        return lp;
      };
    });
    lp.promise = function () { return deferred.promise(); };
    if (autoStart) lp.start();
    return lp;
  }

  $.longPoll = create;
  $.longPoll.LongPoll = LongPoll;

  /**
   * $(el).longPoll(url, options): one poller per element, its callbacks also
   * triggered as events on the element; the poller is in .data("longPoll").
   * $(el).longPoll("stop" | "start"): stop or restart the element's poller.
   */
  $.fn.longPoll = function (url, options) {
    if (url === "stop" || url === "start") {
      return this.each(function () {
        var lp = $(this).data("longPoll");
        if (lp) lp[url]();
      });
    }
    return this.each(function () {
      var $el = $(this);
      var previous = $el.data("longPoll");
      if (previous) previous.stop();
      var opts = extend({}, options);
      opts.onItems = chain(opts.onItems, function (items, body) { $el.trigger("longpoll:items", [items, body]); });
      opts.onState = chain(opts.onState, function (state, info) { $el.trigger("longpoll:state", [state, info]); });
      opts.onError = chain(opts.onError, function (error) { $el.trigger("longpoll:error", [error]); });
      var autoStart = opts.autoStart !== false;
      opts.autoStart = false;
      var lp = create(url, opts);
      $el.data("longPoll", lp); // stored before the first event fires
      if (autoStart) lp.start();
    });
  };
})(typeof globalThis !== "undefined" ? globalThis : this);
