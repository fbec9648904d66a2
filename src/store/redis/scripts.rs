//! The Lua scripts: one per operation, each over the keys of one hash slot, so every operation is atomic and
//! runs unchanged on Redis Cluster; and one that joins the replay guard and the issue for a single Redis server,
//! where any keys can share a script. They mirror `store::steps`. Steps used by more than one script are Lua
//! functions each of those scripts starts with.

use redis::Script;

/// Issue-or-extend, as a Lua function the scripts share: `issue(record key, marker key, candidate record JSON,
/// now ms, new expiry ms, single_use ("1"/"0"), the candidate's issued marker expiry in ms (0: none))` returns
/// `{created, record JSON}`. The record and its marker (same hash slot) are written together, so neither exists
/// without the other.
const ISSUE_FN: &str = r#"
local function issue(record_key, marker_key, fresh, now, exp, single_use, mark)
  local raw = redis.call('GET', record_key)
  if raw then
    local r = cjson.decode(raw)
    if r.expires_at_ms > now and r.state == 'live' then
      r.expires_at_ms = exp
      r.single_use = (single_use == '1')
      local out = cjson.encode(r)
      redis.call('SET', record_key, out, 'PX', math.max(exp - now, 1))
      return {0, out}
    end
  end
  redis.call('SET', record_key, fresh, 'PX', math.max(exp - now, 1))
  if mark > now then
    redis.call('SET', marker_key, mark, 'PX', mark - now)
  end
  return {1, fresh}
end
"#;

/// Issue-or-extend. KEYS[1] record, KEYS[2] the candidate's issued marker (same hash slot); ARGV: candidate
/// record JSON, now ms, new expiry ms, single_use ("1"/"0"), the candidate's issued marker expiry in ms (0: none).
const ISSUE: &str = r#"
return issue(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]))
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

/// Remember once, as a shared Lua function: `once(key, now ms, ttl ms)` returns 1 the first time, else 0.
const ONCE_FN: &str = r#"
local function once(key, now, ttl)
  local v = redis.call('GET', key)
  if v and tonumber(v) > now then return 0 end
  redis.call('SET', key, now + ttl, 'PX', math.max(ttl, 1))
  return 1
end
"#;

/// Remember once. KEYS[1]; ARGV: now ms, ttl ms. Returns 1 the first time.
const ONCE: &str = r#"
return once(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
"#;

/// Remember a request with its digest, as a shared Lua function: `remember_request(key, now ms, ttl ms, digest)`
/// returns 0 the first time, 1 for an exact repeat (same digest), 2 for the same key with another digest.
const REMEMBER_REQUEST_FN: &str = r#"
local function remember_request(key, now, ttl, digest)
  local v = redis.call('GET', key)
  if v then
    local sep = string.find(v, ':', 1, true)
    if sep and tonumber(string.sub(v, 1, sep - 1)) > now then
      if string.sub(v, sep + 1) == digest then return 1 end
      return 2
    end
  end
  redis.call('SET', key, (now + ttl) .. ':' .. digest, 'PX', math.max(ttl, 1))
  return 0
end
"#;

/// Remember a request with its digest. KEYS[1]; ARGV: now ms, ttl ms, digest.
const REMEMBER_REQUEST: &str = r#"
return remember_request(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
"#;

/// A replay guard and an issue-or-extend in one script, for a single Redis server (on a cluster the guard and the
/// record are in different hash slots, so they are two scripts there). KEYS[1] guard, KEYS[2] record, KEYS[3]
/// the candidate's issued marker; ARGV: the guard's digest ("": any repeat is refused), the guard's ttl ms, then
/// the issue's arguments as for [`ISSUE`]. Returns {-1, ""} when the guard refuses (nothing else is written),
/// else what `issue` returns.
const GUARDED_ISSUE: &str = r#"
local now = tonumber(ARGV[4])
local admitted
if ARGV[1] == '' then
  admitted = once(KEYS[1], now, tonumber(ARGV[2])) == 1
else
  admitted = remember_request(KEYS[1], now, tonumber(ARGV[2]), ARGV[1]) ~= 2
end
if not admitted then return {-1, ''} end
return issue(KEYS[2], KEYS[3], ARGV[3], now, tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]))
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
    pub(super) guarded_issue: Script,
    pub(super) use_token: Script,
    pub(super) revoke: Script,
    pub(super) once: Script,
    pub(super) remember_request: Script,
    pub(super) hit: Script,
    pub(super) revoke_until: Script,
}

/// A script made of the shared functions it calls and its body.
fn script(functions: &[&str], body: &str) -> Script {
    Script::new(&format!("{}{body}", functions.concat()))
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            issue: script(&[ISSUE_FN], ISSUE),
            guarded_issue: script(&[ONCE_FN, REMEMBER_REQUEST_FN, ISSUE_FN], GUARDED_ISSUE),
            use_token: script(&[], USE),
            revoke: script(&[], REVOKE),
            once: script(&[ONCE_FN], ONCE),
            remember_request: script(&[REMEMBER_REQUEST_FN], REMEMBER_REQUEST),
            hit: script(&[], HIT),
            revoke_until: script(&[], REVOKE_UNTIL),
        }
    }
}
