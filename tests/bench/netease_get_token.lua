-- wrk script: POST /nimserver/user/getToken.action with fixed, pre-signed headers (the service runs with the
-- replay guard off for this benchmark: wrk's Lua cannot compute SHA-1 per request).
-- TOKENMINT_BENCH_UIDS: 0 = a new uid per request; N = uids cycle through N values (repeated calls extend).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded;charset=utf-8"
wrk.headers["AppKey"] = os.getenv("TOKENMINT_BENCH_APPKEY")
wrk.headers["Nonce"] = os.getenv("TOKENMINT_BENCH_NONCE")
wrk.headers["CurTime"] = os.getenv("TOKENMINT_BENCH_CURTIME")
wrk.headers["CheckSum"] = os.getenv("TOKENMINT_BENCH_CHECKSUM")
local cycle = tonumber(os.getenv("TOKENMINT_BENCH_UIDS") or "0")
local counter = 0
request = function()
  counter = counter + 1
  local uid = counter
  if cycle > 0 then uid = counter % cycle end
  return wrk.format(nil, nil, nil, "uid=" .. uid .. "&channelName=bench&expireAt=600")
end
