"""The Lua scripts that keep a bucket's one state, its TAT, in a Redis key.

Each script runs atomically on the server and reads the server's clock (``TIME``), so the
clocks of the machines running the workers play no part. Times are integer microseconds of
that clock, exact in Lua's doubles; numbers are written with ``'%.0f'`` because Lua's default
number format keeps only 14 digits. Every write sets the key to expire when the bucket is full
again, so an idle bucket leaves nothing behind.

* ``acquire`` (ARGV: interval, tolerance, lead, floor, debt) grants, reserves a grant at most
  ``lead`` µs away, or answers how long to wait: ``{granted, wait, tat after, tat before, now}``.
* ``pause`` (ARGV: pause, tolerance, floor) moves the TAT past a pause: ``{tat, now}``.
* ``release`` (ARGV: the TAT a grant set, the TAT before it) gives a grant back if nothing
  moved since: ``{released}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

__all__ = ["SCRIPTS", "Script"]

_PRELUDE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function store(key, tat)
  redis.call('SET', key, string.format('%.0f', tat),
             'PX', string.format('%.0f', math.ceil((tat - now) / 1000) + 1))
end
"""

# ARGV: interval, tolerance, lead, floor, debt.
# Returns {granted, wait, tat after, tat before, now}.
_ACQUIRE = (
    _PRELUDE
    + """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local stored = tonumber(redis.call('GET', KEYS[1]) or '') or 0
local tat = math.max(stored, tonumber(ARGV[4]), now) + tonumber(ARGV[5])
local wait = tat - tolerance - now
if wait > tonumber(ARGV[3]) then
  if tat > stored and tat > now then store(KEYS[1], tat) end
  return {0, wait, tat, tat, now}
end
if wait < 0 then wait = 0 end
store(KEYS[1], tat + interval)
return {1, wait, tat + interval, tat, now}
"""
)

# ARGV: seconds of pause in µs, tolerance, floor. Returns {tat, now}.
_PAUSE = (
    _PRELUDE
    + """
local stored = tonumber(redis.call('GET', KEYS[1]) or '') or 0
local tat = math.max(stored, tonumber(ARGV[3]), now + tonumber(ARGV[1]) + tonumber(ARGV[2]))
store(KEYS[1], tat)
return {tat, now}
"""
)

# ARGV: the TAT a grant set, the TAT before it. Gives the grant back if nothing moved since.
_RELEASE = (
    _PRELUDE
    + """
local stored = tonumber(redis.call('GET', KEYS[1]) or '')
if stored == nil or stored ~= tonumber(ARGV[1]) then return {0} end
local before = tonumber(ARGV[2])
if before > now then store(KEYS[1], before) else redis.call('DEL', KEYS[1]) end
return {1}
"""
)


class Script:
    """A Lua script and its SHA1, the name ``EVALSHA`` knows it by."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


#: The scripts by name: ``"acquire"``, ``"pause"``, ``"release"``.
SCRIPTS: Mapping[str, Script] = {
    name: Script(src)
    for name, src in (("acquire", _ACQUIRE), ("pause", _PAUSE), ("release", _RELEASE))
}
