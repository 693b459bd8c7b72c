-- wrk script of the throughput benchmark (bench/test_bench_throughput.py, via bench/wrk.py).
--
--   wrk -t1 -c64 -d10s --latency -s bench/wrk_report.lua http://127.0.0.1:PORT -- MODE [ARGS...]
--
-- MODE:
--   path PATH        GET PATH (query string included), e.g. /healthz or /products?user_id=1
--   get ID...        GET /products/ID, rotating over the ids
--   create USER_ID   POST /products with a JSON body (no images); USER_ID is a JSON literal
--
-- done() prints one line "WRK_JSON {...}": requests, status_errors (HTTP status >= 400, wrk's own
-- count), socket errors by kind, duration and rate, and latency percentiles in milliseconds from
-- wrk's histogram. No response() hook: it would make wrk hand every response to Lua, which costs
-- the load generator CPU and shrinks its lead over the server.

local mode
local prepared = {}
local counter = 0
local user_id

function init(args)
  mode = args[1]
  if mode == "path" and args[2] then
    prepared[1] = wrk.format("GET", args[2])
  elseif mode == "get" and args[2] then
    for i = 2, #args do
      prepared[#prepared + 1] = wrk.format("GET", "/products/" .. args[i])
    end
  elseif mode == "create" and args[2] then
    user_id = args[2]
  else
    error("wrk_report.lua: expected 'path PATH', 'get ID...' or 'create USER_ID', got "
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
    return wrk.format("POST", "/products", { ["Content-Type"] = "application/json" }, body)
  end
  return prepared[(counter - 1) % #prepared + 1]
end

local function ms(us)
  return us / 1000.0
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_s": %.6f, "rps": %.3f, "status_errors": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeout_errors": %d, '
      .. '"p50_ms": %.4f, "p75_ms": %.4f, "p90_ms": %.4f, "p99_ms": %.4f, "max_ms": %.4f, '
      .. '"mean_ms": %.4f}\n',
    summary.requests, seconds, summary.requests / seconds, e.status,
    e.connect, e.read, e.write, e.timeout,
    ms(latency:percentile(50)), ms(latency:percentile(75)), ms(latency:percentile(90)),
    ms(latency:percentile(99)), ms(latency.max), ms(latency.mean)))
end
