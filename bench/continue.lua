-- wrk script: each connection continues ITS OWN longpoll session with the newest cursor.
--
-- The first request is the URL's path (a new session); every later one adds
-- the key and cursor of the previous answer, so each poll acknowledges the
-- last batch and takes the next.  A thread's globals are its connection's
-- session, so run one connection per thread (wrk -tN -cN).  A non-200 answer,
-- or a session that ended ("state":"done"), starts a new session.
--
-- done() prints one line, "WRK {json}", that bench.readypolls reads.  With
-- CONTINUE=0 in the environment the script only adds that line: plain wrk
-- on the URL (bench.readypolls's Nchan row); with BODY too, each request POSTs that body.

local carry = os.getenv("CONTINUE") ~= "0"
if os.getenv("BODY") then  -- bench.publishes: every request POSTs this JSON body (plain wrk, CONTINUE=0)
  wrk.method = "POST"
  wrk.body = os.getenv("BODY")
  wrk.headers["Content-Type"] = "application/json"
end
local threads = {}
local base, sep
local key, cursor
restarts = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  base = wrk.path
  sep = base:find("?", 1, true) and "&" or "?"
end

if carry then  -- else plain wrk: no Lua per request or response (which costs wrk ~10% at Nchan's rates)
  function request()
    if key then
      return wrk.format(nil, base .. sep .. "key=" .. key .. "&cursor=" .. cursor)
    end
    return wrk.format(nil, base)
  end

  function response(status, headers, body)
    if status == 200 and not body:find('"state":"done"', 1, true) then
      key = body:match('"key":"([^"]+)"')
      cursor = body:match('"cursor":"?([^",}]+)')
    else
      key = nil
    end
    if not (key and cursor) then
      key = nil
      restarts = restarts + 1
    end
  end
end

function done(summary, latency, requests)
  local restarted = 0
  for _, thread in ipairs(threads) do
    restarted = restarted + (thread:get("restarts") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests":%d,"duration_us":%d,"bytes":%d,"non_2xx":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"restarts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    restarted, latency:percentile(50), latency:percentile(99), latency.max))
end
