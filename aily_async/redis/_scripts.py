"""The Lua scripts that keep a shared bucket in two Redis keys: its grants and what was learnt.

``KEYS[1]`` is a sorted set of the grants of every process sharing the bucket (score: the grant
time, members unique), trimmed to the longest window; ``KEYS[2]`` a hash of what the 429s
taught (absent until the first one): per window ``i``, the limit ``l<i>``, its value at the
latest 429 ``m<i>``, the backoff ``b<i>`` (windows), when to probe ``a<i>``, the one probe in
flight ``o<i>`` (member) granted at ``t<i>``; ``f``, the pause (nothing granted before); and
``r``, until when the slot announced by the first 429 of an episode may still be taken.
Both expire by themselves when idle.

Each script runs atomically on the server and reads the server's clock (``TIME``), so the
clocks of the machines running the workers play no part. Times are integer microseconds of that
clock, exact in Lua's doubles; numbers are written with ``'%.0f'`` (Lua's default format keeps
14 digits). ``ARGV`` starts with the windows: their number ``n``, then ``rate``, ``span`` (µs:
``per + margin``) and ``per`` (µs) for each; each script's own arguments follow.

* ``acquire`` (confirm_after, lead, member, whether grants of the caller's are expected (0 or
  1), confirmed probes, grants to seed) grants now,
  reserves a grant at most ``lead`` µs away (then the caller sleeps until it), or answers how
  long to wait: ``{granted, wait, probe, now, next wait, grants recorded before}``.
* ``refused`` (pause, limit) learns from a 429: ``{pause until, now, window}``.
* ``release`` (member) gives back a reserved grant whose caller was cancelled: ``{released}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from .._windows import MAX_BACKOFF  # the local window rule's, so both probe alike

__all__ = ["SCRIPTS", "Script"]

_PRELUDE = f"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local G, S = KEYS[1], KEYS[2]
local n = tonumber(ARGV[1])
local rate, span, per = {{}}, {{}}, {{}}
local longest = 0
for i = 1, n do
  rate[i] = tonumber(ARGV[3 * i - 1])
  span[i] = tonumber(ARGV[3 * i])
  per[i] = tonumber(ARGV[3 * i + 1])
  if span[i] > longest then longest = span[i] end
end
local k = 3 * n + 2
local function fmt(x) return string.format('%.0f', x) end
local function since(x) return '(' .. fmt(x) end
-- grants younger than x (the future included)
local function count(x) return redis.call('ZCOUNT', G, since(x), '+inf') end
-- the score of the j-th oldest grant younger than x
local function nth(x, j)
  local r = redis.call('ZRANGEBYSCORE', G, since(x), '+inf', 'WITHSCORES', 'LIMIT', j - 1, 1)
  return tonumber(r[2])
end
local function get(field, default)
  local v = redis.call('HGET', S, field)
  if v then return tonumber(v) end
  return default
end
local function keep()
  local newest = redis.call('ZRANGE', G, -1, -1, 'WITHSCORES')
  if newest[2] then
    redis.call('PEXPIRE', G, math.ceil((tonumber(newest[2]) - now + longest) / 1000) + 1)
  end
  if redis.call('EXISTS', S) == 1 then
    redis.call('PEXPIRE', S, math.ceil({MAX_BACKOFF + 1} * longest / 1000))
  end
end
"""

# After the windows: confirm_after, lead, member, how many of the caller's grants the record
# should hold, #confirmed, confirmed members..., #seeds, (score, member) pairs...
_ACQUIRE = (
    _PRELUDE
    + """
local confirm_after, lead, member = tonumber(ARGV[k]), tonumber(ARGV[k + 1]), ARGV[k + 2]
local expect = tonumber(ARGV[k + 3])
k = k + 4
local confirmed = {}
for _ = 1, tonumber(ARGV[k]) do k = k + 1; confirmed[ARGV[k]] = true end
k = k + 1
local seeded = tonumber(ARGV[k]) > 0
for _ = 1, tonumber(ARGV[k]) do
  redis.call('ZADD', G, ARGV[k + 1], ARGV[k + 2])
  k = k + 2
end
redis.call('ZREMRANGEBYSCORE', G, '-inf', fmt(now - longest))
local before = redis.call('ZCARD', G)
if before == 0 and expect > 0 and not seeded then
  return {0, 0, 0, fmt(now), 0, 0}  -- the record is gone (Redis restarted empty): seed first
end
local learnt = redis.call('EXISTS', S) == 1
local floor, limit = 0, {}
for i = 1, n do
  limit[i] = rate[i]
  if learnt then
    limit[i] = get('l' .. i, rate[i])
    local open = redis.call('HGET', S, 'o' .. i)
    if open and (confirmed[open] or get('t' .. i, 0) + confirm_after <= now) then
      limit[i] = math.min(rate[i], limit[i] + 1)  -- the probe went through
      redis.call('HSET', S, 'l' .. i, limit[i])
      redis.call('HDEL', S, 'o' .. i, 't' .. i)
    end
  end
end
if learnt then floor = get('f', 0) end

-- How long until every window allows a grant; whether that is exact (a grant may be reserved
-- for then); which windows it is a probe of (above their limit).
local function wait_for()
  local wait, exact, probe = math.max(0, floor - now), true, {}
  local normal = {}
  local slot = math.max(0, floor - now)  -- when the slot a 429's reset announced is free
  for i = 1, n do
    local c = count(now - span[i])
    if c >= rate[i] then
      slot = math.max(slot, nth(now - span[i], c - rate[i] + 1) + span[i] - now)
    end
    normal[i] = 0
    if c >= limit[i] then
      normal[i] = math.huge
      if limit[i] > 0 then normal[i] = nth(now - span[i], c - limit[i] + 1) + span[i] - now end
      local p = math.huge
      if limit[i] < rate[i] then
        if learnt and redis.call('HGET', S, 'o' .. i) then
          p = get('t' .. i, 0) + confirm_after - now  -- a probe in flight: silence confirms it
          if p < normal[i] then exact = false end
        else
          local room = 0
          if c >= rate[i] then room = nth(now - span[i], c - rate[i] + 1) + span[i] - now end
          p = math.max(room, get('a' .. i, 0) - now)
        end
      end
      wait = math.max(wait, math.min(normal[i], p))
    end
  end
  local reset_slot = false
  if learnt and wait > slot and now + slot < get('r', 0) then
    wait, exact, reset_slot = slot, true, true  -- the refused call takes the announced slot
  end
  for i = 1, n do probe[i] = not reset_slot and normal[i] > wait end
  return wait, exact, probe, reset_slot
end

local wait, exact, probe, reset_slot = wait_for()
if wait > 0 and (wait > lead or not exact) then
  return {0, fmt(wait), 0, fmt(now), fmt(wait), before}
end
local at = now + wait
redis.call('ZADD', G, fmt(at), member)
if reset_slot then redis.call('HDEL', S, 'r') end
local probed = 0
for i = 1, n do
  if probe[i] then
    redis.call('HSET', S, 'o' .. i, member, 't' .. i, fmt(at))
    probed = 1
    learnt = true
  end
end
keep()
local after = wait_for()
return {1, fmt(wait), probed, fmt(now), fmt(after), before}
"""
)

# After the windows: pause (µs), the limit of the quota that was full (0: unknown).
_REFUSED = (
    _PRELUDE
    + f"""
local pause, hint = tonumber(ARGV[k]), tonumber(ARGV[k + 1])
local floor = math.max(get('f', 0), now + pause)
redis.call('HSET', S, 'f', fmt(floor))
local function held(i) return redis.call('ZCOUNT', G, since(now - per[i]), fmt(now)) end
local pick = nil
for i = 1, n do if rate[i] == hint then pick = i end end
if not pick then
  -- Of the windows that could announce that wait, the fullest of ours if half full, else
  -- the longest (someone else's grants: the safe mistake).
  local fullest, full, long = nil, -1, nil
  for i = 1, n do
    if pause <= math.ceil(span[i] / 1000000) * 1000000 then
      local f = held(i) / rate[i]
      if f > full then fullest, full = i, f end
      if not long or span[i] > span[long] then long = i end
    end
  end
  if not fullest then
    for i = 1, n do if not long or span[i] > span[long] then long = i end end
    pick = long
  elseif full >= 0.5 then pick = fullest else pick = long end
end
local i = pick
if get('l' .. i, rate[i]) >= rate[i] then
  -- The first 429 of an episode: the slot its reset announced may be taken then, by one
  -- call (the refused one, first in its queue), whatever is learnt below.
  local shortest = per[1]
  for j = 2, n do if per[j] < shortest then shortest = per[j] end end
  redis.call('HSET', S, 'r', fmt(floor + shortest))
end
-- The refused grant never counted: drop the oldest one the server may still hold.
local oldest = redis.call('ZRANGEBYSCORE', G, since(now - per[i]), fmt(now), 'LIMIT', 0, 1)
if oldest[1] then redis.call('ZREM', G, oldest[1]) end
local measured = held(i)
local limit = get('l' .. i, rate[i])
local backoff = get('b' .. i, 1)
local probe_at = get('a' .. i, 0)
if limit < rate[i] and now >= probe_at then  -- a probe round met the full window
  if measured > get('m' .. i, rate[i]) then backoff = 1 else
    backoff = math.min({MAX_BACKOFF}, 2 * backoff) end
elseif limit >= rate[i] then
  backoff = 1
end
probe_at = math.max(probe_at, now + backoff * span[i])
redis.call('HSET', S, 'l' .. i, measured, 'm' .. i, measured, 'b' .. i, backoff,
           'a' .. i, fmt(probe_at))
redis.call('HDEL', S, 'o' .. i, 't' .. i)
keep()
return {{fmt(floor), fmt(now), i}}
"""
)

# After the windows: the member of the reserved grant.
_RELEASE = (
    _PRELUDE
    + """
local member = ARGV[k]
local released = redis.call('ZREM', G, member)
for i = 1, n do
  if redis.call('HGET', S, 'o' .. i) == member then redis.call('HDEL', S, 'o' .. i, 't' .. i) end
end
return {released}
"""
)


class Script:
    """A Lua script and its SHA1, the name ``EVALSHA`` knows it by."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


#: The scripts by name: ``"acquire"``, ``"refused"``, ``"release"``.
SCRIPTS: Mapping[str, Script] = {
    name: Script(src)
    for name, src in (("acquire", _ACQUIRE), ("refused", _REFUSED), ("release", _RELEASE))
}
