-- The flooder of bench/flood.py: wrk -t1 -c C -s bench/flood.lua URL -- BODY_FILE DELAY_MS
-- Each connection POSTs the body, waits for the answer, then a random pause of DELAY_MS on average (so
-- C connections send about C * 1000 / DELAY_MS a second while answers are fast, as 429s are). The
-- pause is exponential: with a fixed one the connections stay in lockstep, C requests at once every
-- DELAY_MS (--lockstep keeps that shape: bench/flood.py). done() prints the statuses as JSON.
local threads = {}
statuses = {} -- a global of each thread's own Lua state, read back by done() through thread:get

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method, wrk.body = "POST", file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "text/plain"
  pause = tonumber(args[2])
  lockstep = args[3] == "lockstep"
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16))
  request_bytes = wrk.format()
end

function request()
  return request_bytes
end

function delay()
  if lockstep then return pause end
  return -math.log(1 - math.random()) * pause
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do total[status] = (total[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(total) do parts[#parts + 1] = string.format('"%d": %d', status, n) end
  io.write(string.format('{"requests": %d, "duration_us": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, table.concat(parts, ", ")))
end
