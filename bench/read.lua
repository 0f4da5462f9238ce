-- wrk script: GET /{index}/_doc/{id} for random ids 0..DOCS-1 of a preloaded
-- index (every one exists, so every answer should be 200).
--
--   wrk -t2 -c8 -d20s -s bench/read.lua http://HOST:PORT -- INDEX DOCS
--
-- done() prints one line "BENCH_JSON {...}" like bulk.lua.

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  index = args[1] or "bench-read"
  docs = tonumber(args[2] or "10000")
  failed = 0
  math.randomseed(os.time() * 100 + tid)
end

function request()
  return wrk.format("GET", "/" .. index .. "/_doc/" .. math.random(0, docs - 1))
end

function response(status, hdrs, body)
  if status ~= 200 then
    failed = failed + 1
    if failed <= 3 then io.stderr:write("FAILED " .. status .. " " .. string.sub(body, 1, 400) .. "\n") end
  end
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + (t:get("failed") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"failed":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, n,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
