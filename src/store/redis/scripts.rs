//! The Lua scripts: one per operation, each over the keys of one hash slot, so every operation is atomic and
//! runs unchanged on Redis Cluster. They mirror `store::steps`.

use redis::Script;

/// Issue-or-extend. KEYS[1] record, KEYS[2] the candidate's issued marker (same hash slot); ARGV: candidate
/// record JSON, now ms, new expiry ms, single_use ("1"/"0"), the candidate's issued marker expiry in ms (0: none).
/// The record and its marker are written in one script, so neither exists without the other.
const ISSUE: &str = r#"
local now = tonumber(ARGV[2])
local exp = tonumber(ARGV[3])
local raw = redis.call('GET', KEYS[1])
if raw then
  local r = cjson.decode(raw)
  if r.expires_at_ms > now and r.state == 'live' then
    r.expires_at_ms = exp
    r.single_use = (ARGV[4] == '1')
    local out = cjson.encode(r)
    redis.call('SET', KEYS[1], out, 'PX', math.max(exp - now, 1))
    return {0, out}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', math.max(exp - now, 1))
local mark = tonumber(ARGV[5])
if mark > now then
  redis.call('SET', KEYS[2], mark, 'PX', mark - now)
end
return {1, ARGV[1]}
"#;

/// Use a token. KEYS[1] record; ARGV: SHA-1 of the token (hex), now ms. Returns {status, record}.
///
/// Lua's string comparison stops at the first differing byte. Comparing SHA-1 digests instead of the tokens
/// themselves means its timing can tell at most how much of a digest an attacker's guess shares, which says
/// nothing about the stored token.
const USE: &str = r#"
local now = tonumber(ARGV[2])
local raw = redis.call('GET', KEYS[1])
if not raw then return {'unknown', ''} end
local r = cjson.decode(raw)
if r.expires_at_ms <= now or redis.sha1hex(r.token) ~= ARGV[1] then return {'unknown', ''} end
if r.state == 'revoked' then return {'revoked', ''} end
if r.state == 'consumed' then return {'used', ''} end
if r.single_use then
  r.state = 'consumed'
  redis.call('SET', KEYS[1], cjson.encode(r), 'KEEPTTL')
end
return {'admitted', raw}
"#;

/// Revoke. KEYS[1] record; ARGV: now ms.
const REVOKE: &str = r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return '' end
local r = cjson.decode(raw)
if r.expires_at_ms <= tonumber(ARGV[1]) or r.state == 'revoked' then return '' end
r.state = 'revoked'
local out = cjson.encode(r)
redis.call('SET', KEYS[1], out, 'KEEPTTL')
return out
"#;

/// Remember once. KEYS[1]; ARGV: now ms, ttl ms. Returns 1 the first time.
const ONCE: &str = r#"
local now = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
if v and tonumber(v) > now then return 0 end
redis.call('SET', KEYS[1], now + tonumber(ARGV[2]), 'PX', math.max(tonumber(ARGV[2]), 1))
return 1
"#;

/// Remember a request with its digest. KEYS[1]; ARGV: now ms, ttl ms, digest. Returns 0 the first time, 1 for an
/// exact repeat (same digest), 2 for the same key with another digest.
const REMEMBER_REQUEST: &str = r#"
local now = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, ':', 1, true)
  if sep and tonumber(string.sub(v, 1, sep - 1)) > now then
    if string.sub(v, sep + 1) == ARGV[3] then return 1 end
    return 2
  end
end
redis.call('SET', KEYS[1], (now + tonumber(ARGV[2])) .. ':' .. ARGV[3], 'PX', math.max(tonumber(ARGV[2]), 1))
return 0
"#;

/// Rate step, mirroring `store::rate_step`. KEYS[1] hash; ARGV: now, limit, window ms, lockout ms.
/// Returns {allowed, reset_at}.
const HIT: &str = r#"
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local lockout = tonumber(ARGV[4])
local s = redis.call('HMGET', KEYS[1], 'start', 'count', 'locked', 'expires')
local start, count, locked = now, 0, 0
if s[1] and tonumber(s[4]) > now then
  start, count, locked = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
end
local allowed, reset
if locked > now then
  allowed, reset = 0, locked
else
  if now >= start + window then start = now; count = 0 end
  count = count + 1
  if count > limit then
    if lockout > 0 then locked = now + lockout else locked = start + window end
    start = now; count = 0
    allowed, reset = 0, locked
  else
    allowed, reset = 1, start + window
  end
end
local expires = math.max(start + window, locked)
redis.call('HSET', KEYS[1], 'start', start, 'count', count, 'locked', locked, 'expires', expires)
redis.call('PEXPIRE', KEYS[1], math.max(expires - now, 1))
return {allowed, reset}
"#;

/// Revoke a token id until a time. KEYS[1]; ARGV: until ms, now ms.
const REVOKE_UNTIL: &str = r#"
local ttl = tonumber(ARGV[1]) - tonumber(ARGV[2])
if ttl <= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
return 1
"#;

/// Every script, loaded once per store.
pub(super) struct Scripts {
    pub(super) issue: Script,
    pub(super) use_token: Script,
    pub(super) revoke: Script,
    pub(super) once: Script,
    pub(super) remember_request: Script,
    pub(super) hit: Script,
    pub(super) revoke_until: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            issue: Script::new(ISSUE),
            use_token: Script::new(USE),
            revoke: Script::new(REVOKE),
            once: Script::new(ONCE),
            remember_request: Script::new(REMEMBER_REQUEST),
            hit: Script::new(HIT),
            revoke_until: Script::new(REVOKE_UNTIL),
        }
    }
}
