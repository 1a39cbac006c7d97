-- Closed-loop POSTs of one body (bench/wrk.py): wrk -s bench/post.lua URL -- BODY_FILE "Name: value"...
-- The request is built once per thread; no response() function, so wrk does not parse answers' bodies.
-- done() prints the run as one JSON line (latencies in microseconds; errors include HTTP status > 399).
function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method, wrk.body = "POST", file:read("*a")
  file:close()
  for i = 2, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
  request_bytes = wrk.format()
end

function request()
  return request_bytes
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
