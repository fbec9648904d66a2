-- wrk script: NetEase getToken as an app server sends it: a fresh Nonce and a new uid per request, headers signed
-- ahead by netease_requests.py (TOKENMINT_BENCH_REQUESTS names the file). Every answer's NetEase code is checked
-- (failures are HTTP 200): done() prints how many were not code 200, and the run fails if any was.
local threads = {}
local lines = {}

setup = function(thread)
  thread:set("id", #threads)
  thread:set("of", 0)
  table.insert(threads, thread)
  for _, t in ipairs(threads) do t:set("of", #threads) end
end

init = function(args)
  local n = 0
  for line in io.lines(os.getenv("TOKENMINT_BENCH_REQUESTS")) do
    -- Thread k of m takes lines k, k+m, ...: no header set is sent twice.
    if n % of == id then table.insert(lines, line) end
    n = n + 1
  end
  next_line = 0
  ok, failed, exhausted = 0, 0, 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded;charset=utf-8"
  wrk.headers["AppKey"] = "sampleappkey00000000000000000001"
end

request = function()
  next_line = next_line + 1
  if next_line > #lines then exhausted = exhausted + 1; next_line = 1 end
  local nonce, cur_time, checksum, uid = lines[next_line]:match("(%S+) (%S+) (%S+) (%S+)")
  wrk.headers["Nonce"] = nonce
  wrk.headers["CurTime"] = cur_time
  wrk.headers["CheckSum"] = checksum
  return wrk.format(nil, nil, nil, "uid=" .. uid .. "&channelName=bench&expireAt=600")
end

-- TOKENMINT_BENCH_RATE (requests per second, all connections together, with TOKENMINT_BENCH_CONNECTIONS): pace
-- each connection so the whole run offers that rate, for latency at a given load rather than at saturation.
local rate = tonumber(os.getenv("TOKENMINT_BENCH_RATE") or "")
local conns = tonumber(os.getenv("TOKENMINT_BENCH_CONNECTIONS") or "")
if rate and conns and rate > 0 then
  delay = function() return 1000 * conns / rate end
end

response = function(status, headers, body)
  if status == 200 and body:find('"code":200', 1, true) then ok = ok + 1 else failed = failed + 1 end
end

done = function(summary, latency, requests)
  local total_ok, total_failed, total_exhausted = 0, 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_failed = total_failed + t:get("failed")
    total_exhausted = total_exhausted + t:get("exhausted")
  end
  io.write(string.format("netease codes: %d code 200, %d other%s\n", total_ok, total_failed,
    total_exhausted > 0 and " (request file exhausted: header sets were reused)" or ""))
end
