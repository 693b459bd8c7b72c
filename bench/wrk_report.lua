-- wrk script of the throughput benchmarks (bench/test_bench_throughput.py and
-- bench/test_bench_access.py, via bench/wrk.py).
--
--   wrk -t1 -c64 -d10s --latency -s bench/wrk_report.lua http://127.0.0.1:PORT -- [statuses] MODE [ARGS...]
--
-- MODE:
--   path PATH        GET PATH (query string included), e.g. /healthz or /products?user_id=1
--   get ID...        GET /products/ID, rotating over the ids
--   create USER_ID   POST /products with a JSON body (no images); USER_ID is a JSON literal
--
-- Headers given to wrk with -H (an API key: -H 'Authorization: Bearer …') go with every request.
--
-- done() prints one line "WRK_JSON {...}": requests, status_errors (HTTP status >= 400, wrk's own
-- count), socket errors by kind, duration and rate, latency percentiles in milliseconds from
-- wrk's histogram, and "statuses" (responses by status; empty unless counted). No response()
-- hook unless the first argument is `statuses`: it makes wrk hand every response to Lua, which
-- costs the load generator CPU and shrinks its lead over the server, so only runs that must tell
-- 201 from 429 (the write path with rate limits on) count them.

local mode
local prepared = {}
local counter = 0
local user_id
local create_headers = {}
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  local first = 1
  if args[1] == "statuses" then
    first = 2
    statuses = {}
    response = function(status, headers, body)
      local key = tostring(status)
      statuses[key] = (statuses[key] or 0) + 1
    end
  end
  mode = args[first]
  if mode == "path" and args[first + 1] then
    prepared[1] = wrk.format("GET", args[first + 1])
  elseif mode == "get" and args[first + 1] then
    for i = first + 1, #args do
      prepared[#prepared + 1] = wrk.format("GET", "/products/" .. args[i])
    end
  elseif mode == "create" and args[first + 1] then
    user_id = args[first + 1]
    -- wrk.format takes a headers table instead of wrk.headers (the -H ones), not on top of it.
    for name, value in pairs(wrk.headers) do
      create_headers[name] = value
    end
    create_headers["Content-Type"] = "application/json"
  else
    error("wrk_report.lua: expected '[statuses] path PATH', 'get ID...' or 'create USER_ID', got "
      .. tostring(mode))
  end
end

function request()
  counter = counter + 1
  if mode == "create" then
    local body = string.format(
      '{"user_id": %s, "product_name": "wrk product %d", '
        .. '"product_description": "Created under load by wrk", '
        .. '"product_images": [], "product_price": %d.%02d}',
      user_id, counter, 10 + counter % 40, counter % 100)
    return wrk.format("POST", "/products", create_headers, body)
  end
  return prepared[(counter - 1) % #prepared + 1]
end

local function ms(us)
  return us / 1000.0
end

local function counted_statuses()
  local merged = {}
  for _, thread in ipairs(threads) do
    local counted = thread:get("statuses")
    if type(counted) == "table" then
      for status, count in pairs(counted) do
        merged[status] = (merged[status] or 0) + count
      end
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    parts[#parts + 1] = string.format('"%s": %d', status, count)
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_s": %.6f, "rps": %.3f, "status_errors": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeout_errors": %d, '
      .. '"p50_ms": %.4f, "p75_ms": %.4f, "p90_ms": %.4f, "p99_ms": %.4f, "max_ms": %.4f, '
      .. '"mean_ms": %.4f, "statuses": %s}\n',
    summary.requests, seconds, summary.requests / seconds, e.status,
    e.connect, e.read, e.write, e.timeout,
    ms(latency:percentile(50)), ms(latency:percentile(75)), ms(latency:percentile(90)),
    ms(latency:percentile(99)), ms(latency.max), ms(latency.mean), counted_statuses()))
end
