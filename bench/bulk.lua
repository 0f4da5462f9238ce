-- wrk script: POST /{index}/_bulk with N freshly generated small documents per
-- request, every document id unique (tag-thread-request-item), so every item
-- is a real create on the primary.
--
--   wrk -t2 -c8 -d20s -s bench/bulk.lua http://HOST:PORT -- INDEX DOCS DOC_BYTES TAG
--
-- A request counts as failed when the status is not 200 or the bulk answer
-- says "errors":true (some item was refused). done() prints one line
-- "BENCH_JSON {...}" with throughput, latency percentiles (µs) and errors.

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  index = args[1] or "bench"
  docs = tonumber(args[2] or "100")
  doc_bytes = tonumber(args[3] or "200")
  tag = args[4] or "t"
  counter = 0
  bulk_failed = 0
  path = "/" .. index .. "/_bulk"
  headers = { ["Content-Type"] = "application/x-ndjson" }
  -- Fixed part of a document; the padding brings it to about doc_bytes.
  local skeleton = '{"user":"user-00","n":1000000,"ts":1700000000000,"tags":["bench","tandem"],"msg":""}'
  pad = string.rep("x", math.max(0, doc_bytes - #skeleton))
end

function request()
  counter = counter + 1
  local prefix = tag .. "-" .. tid .. "-" .. counter .. "-"
  local parts = {}
  for i = 1, docs do
    parts[#parts + 1] = '{"index":{"_id":"' .. prefix .. i .. '"}}\n{"user":"user-'
      .. string.format("%02d", i % 97) .. '","n":' .. (1000000 + counter % 9000000)
      .. ',"ts":1700000000000,"tags":["bench","tandem"],"msg":"' .. pad .. '"}\n'
  end
  return wrk.format("POST", path, headers, table.concat(parts))
end

function response(status, hdrs, body)
  if status ~= 200 or string.find(string.sub(body, 1, 80), '"errors":true', 1, true) then
    bulk_failed = bulk_failed + 1
    if bulk_failed <= 3 then
      -- A sample for the log: the status and where the first failure is.
      local at = string.find(body, '"error":', 1, true) or 1
      io.stderr:write("FAILED " .. status .. " " .. string.sub(body, at, at + 400) .. "\n")
    end
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, t in ipairs(threads) do failed = failed + (t:get("bulk_failed") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"failed":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, failed,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
