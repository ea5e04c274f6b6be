/*! jquery.longpoll.js - LongPoll for people who live in jQuery.
 *
 * Load jQuery and longpoll.js first (this file bundles neither):
 *
 *   <script src="jquery.min.js"></script>
 *   <script src="/web/longpoll.js"></script>
 *   <script src="/web/jquery.longpoll.js"></script>
 *
 *   // a started LongPoll instance, callbacks as in LongPoll's options
 *   var lp = $.longPoll("/topics/news", {onItems: function (items) { ... }});
 *
 *   // one bound to an element: its items, states and errors are also jQuery events
 *   $("#feed")
 *     .on("longpoll:items", function (event, items, body) { ... })
 *     .on("longpoll:state", function (event, state, info) { ... })
 *     .on("longpoll:error", function (event, error) { ... })
 *     .longPoll("/statuses/sample.json", {params: {identifier: "me", percent: 10}});
 *   $("#feed").data("longPoll");      // the LongPoll instance
 *   $("#feed").longPoll("stop");      // stops it ("start" starts it again)
 */
(function (root) {
  "use strict";

  var $ = root.jQuery;
  if (!$ || !$.fn) throw new Error("jquery.longpoll.js: load jQuery first");
  if (typeof root.LongPoll !== "function") throw new Error("jquery.longpoll.js: load longpoll.js first");

  function create(url, options) {
    var opts = $.extend({}, options);
    var autoStart = opts.autoStart !== false;
    delete opts.autoStart;
    var lp = new root.LongPoll(url, opts);
    if (autoStart) lp.start();
    return lp;
  }

  /** $.longPoll(url, options): a LongPoll, started unless options.autoStart is false. */
  $.longPoll = create;

  /**
   * $(el).longPoll(url, options): one LongPoll per element, its callbacks also
   * triggered as events on the element; the instance is in .data("longPoll").
   * $(el).longPoll("stop" | "start"): stop or restart the element's instance.
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
      var opts = $.extend({}, options);
      var user = {onItems: opts.onItems, onState: opts.onState, onError: opts.onError};
      opts.onItems = function (items, body) {
        if (user.onItems) user.onItems.call(this, items, body);
        $el.trigger("longpoll:items", [items, body]);
      };
      opts.onState = function (state, info) {
        if (user.onState) user.onState.call(this, state, info);
        $el.trigger("longpoll:state", [state, info]);
      };
      opts.onError = function (error) {
        if (user.onError) user.onError.call(this, error);
        $el.trigger("longpoll:error", [error]);
      };
      var autoStart = opts.autoStart !== false;
      opts.autoStart = false;
      var lp = create(url, opts);
      $el.data("longPoll", lp); // stored before the first event fires
      if (autoStart) lp.start();
    });
  };
})(typeof globalThis !== "undefined" ? globalThis : this);
