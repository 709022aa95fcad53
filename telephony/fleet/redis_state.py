"""Fleet state in Redis (Redis OSS 7.0+ or Valkey 7.2+) through redis-py's ``redis.asyncio``.

Keys (prefix ``tel:``), each touched by one atomic step, with only Redis 7.0 commands:

- ``tel:claim:{key}``: a single-use claim, ``SET NX PXAT`` (stream-token nonces, SIP deliveries);
- ``tel:val:{key}``: a value stored once, ``SET NX GET PX`` (the stream token a CallSid was
  answered with, or that its stream has started);
- ``tel:fleet``: ZSET of calls holding a fleet slot, score = lease expiry (ms, server clock).
  A Lua script drops expired members, renews an existing one, refuses at ``FLEET_MAX_CALLS``,
  else adds: one script, one key. Owners renew their live calls every heartbeat, so a crashed
  instance's calls give their slots back within ``FLEET_LEASE``;
- ``tel:call:{id}``: hash ``owner``, ``path``; set only if no other instance owns the call (a
  script); expires unless renewed;
- ``tel:inst:{instance}``: hash ``state`` (ready/draining), ``calls``, ``updated``; expires after
  three missed heartbeats; ``tel:ready``: ZSET of ready instances, score = expiry;
  ``tel:members``: ZSET of every instance, ready or draining, score = expiry (the console's
  fleet-wide list of calls in progress asks each of them);
- ``tel:ctl:{instance}``: the pub/sub channel of an instance's control messages and replies.
  Every message on it is sealed (:mod:`.seal`: an HMAC with a key from ``STREAM_TOKEN_SECRET``,
  a timestamp window, each seal taken once); anything else is refused and logged, and at most
  :data:`MAX_CONTROL_TASKS` messages are acted on at once.

Everything here is soft state that its owner re-asserts every heartbeat, so a Redis restart
without persistence heals within one heartbeat. Each heartbeat also publishes a probe to our own
channel: ``PUBLISH`` answering 0 receivers means our subscription is gone (redis-py does not
always say so), and the listener is rebuilt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from .seal import ControlSeal, Refused
from .state import FleetState, FleetUnavailable

__all__ = ["RedisState"]

logger = logging.getLogger("telephony.fleet")

PREFIX = "tel:"
FLEET_KEY = PREFIX + "fleet"
READY_KEY = PREFIX + "ready"
MEMBERS_KEY = PREFIX + "members"
STOP_TIMEOUT_S = 2.0
MAX_CONTROL_TASKS = 32  # control messages acted on at once; more are refused (and logged)

# KEYS[1] tel:fleet; ARGV: member, ttl ms, max (0: none). Returns 1 if held, 0 when full.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expiry = now + tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  return 1
end
local max = tonumber(ARGV[3])
if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then
  return 0
end
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
return 1
"""

# KEYS[1] tel:fleet; ARGV: ttl ms, members... Re-asserts the members' leases (also after a Redis
# restart emptied the set), drops expired ones; returns how many calls hold a slot.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
end
return redis.call('ZCARD', KEYS[1])
"""


# KEYS[1] tel:call:{id}; ARGV: instance, path, ttl ms. 1 if we own it now, 0 if another does.
OWN = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'path', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


class RedisState(FleetState):
    """Fleet state in Redis.

    Args:
        url: ``redis://`` or ``rediss://`` URL (never logged: it may hold a password).
        instance: this instance's id.
        lease_s: how long a call's fleet slot lives without renewal (``FLEET_LEASE``).
        heartbeat_s: how often this instance re-asserts its state (``FLEET_HEARTBEAT``).
        timeout_s: socket timeout of each Redis command; a dead Redis must never hold a webhook.
        seal: seals and opens control messages (the fleet's shared key).
        warn: ``warn(key, message)`` logs a refused control message (a rate-limited warning;
            by default a plain one on the ``telephony.fleet`` logger).
    """

    shared = True

    def __init__(
        self,
        url: str,
        instance: str,
        *,
        lease_s: float = 30.0,
        heartbeat_s: float = 5.0,
        timeout_s: float = 0.25,
        seal: ControlSeal,
        warn: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(instance)
        self._seal = seal
        self._warn = warn or (lambda key, message: logger.warning(message))
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            health_check_interval=max(heartbeat_s, 1.0),
        )
        self._reserve = self._client.register_script(RESERVE)
        self._renew = self._client.register_script(RENEW)
        self._own = self._client.register_script(OWN)
        self._lease_ms = int(lease_s * 1000)
        self._heartbeat_s = heartbeat_s
        self._channel = f"{PREFIX}ctl:{instance}"
        self._draining = False
        self._up = False
        self._was_down = False
        self._fleet_active: int | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._stopping = False

    # ------------------------------------------------------------------ lifetime

    @property
    def up(self) -> bool:
        return self._up

    @property
    def fleet_active(self) -> int | None:
        return self._fleet_active if self._up else None

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="fleet-listener")
        with contextlib.suppress(FleetUnavailable):
            await self.heartbeat()
        if self._up:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._subscribed.wait()
            logger.info("fleet: instance %s joined (Redis up)", self.instance)
        else:
            logger.warning(
                "fleet: Redis is unreachable at start-up; instance %s runs DEGRADED (per-instance "
                "rules) and joins the fleet as soon as Redis answers",
                self.instance,
            )
        self._heartbeat_task = asyncio.create_task(self._beat(), name="fleet-heartbeat")

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._heartbeat_task, self._listener, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: shutdown never hangs on a Redis client
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.zrem(READY_KEY, self.instance)
                    pipe.zrem(MEMBERS_KEY, self.instance)
                    pipe.delete(f"{PREFIX}inst:{self.instance}")
                    await pipe.execute()
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self._client.aclose()

    @contextlib.asynccontextmanager
    async def _redis(self) -> AsyncIterator[None]:
        """Turns a Redis failure into :class:`FleetUnavailable` and keeps :attr:`up` true."""
        try:
            yield
        except (RedisError, OSError) as exc:
            if self._up:
                logger.warning(
                    "fleet: Redis unreachable (%s); new calls are admitted DEGRADED by "
                    "per-instance rules",
                    type(exc).__name__,
                )
            self._up = False
            self._was_down = True
            raise FleetUnavailable(type(exc).__name__) from None
        if not self._up and self._was_down:
            logger.info("fleet: Redis reachable again; instance %s rejoins", self.instance)
        self._up = True

    # ------------------------------------------------------------------ shared state

    async def claim(self, key: str, expires_at: float) -> bool:
        async with self._redis():
            done = await self._client.set(
                f"{PREFIX}claim:{key}", self.instance, nx=True, pxat=int(expires_at * 1000)
            )
        return bool(done)

    async def unclaim(self, key: str) -> None:
        async with self._redis():
            await self._client.delete(f"{PREFIX}claim:{key}")

    async def reserve(self, call_id: str, ttl_s: float, max_calls: int | None) -> bool:
        async with self._redis():
            held = await self._reserve(
                keys=[FLEET_KEY], args=[call_id, int(ttl_s * 1000), max_calls or 0]
            )
        return bool(held)

    async def recall(self, key: str) -> str | None:
        async with self._redis():
            value = await self._client.get(f"{PREFIX}val:{key}")
        return value.decode() if value is not None else None

    async def remember(self, key: str, value: str, ttl_s: float) -> str | None:
        async with self._redis():
            before = await self._client.set(
                f"{PREFIX}val:{key}", value, nx=True, get=True, px=int(ttl_s * 1000)
            )
        return before.decode() if before is not None else None

    async def overwrite(self, key: str, value: str) -> None:
        async with self._redis():
            await self._client.set(f"{PREFIX}val:{key}", value, xx=True, keepttl=True)

    async def own(self, call_id: str, path: str) -> bool:
        async with self._redis():
            owned = await self._own(
                keys=[f"{PREFIX}call:{call_id}"], args=[self.instance, path, 2 * self._lease_ms]
            )
        return bool(owned)

    async def release(self, call_id: str) -> None:
        async with self._redis(), self._client.pipeline(transaction=False) as pipe:
            pipe.zrem(FLEET_KEY, call_id)
            pipe.delete(f"{PREFIX}call:{call_id}")
            await pipe.execute()

    async def owner_of(self, call_id: str) -> str | None:
        async with self._redis():
            owner = await self._client.hget(f"{PREFIX}call:{call_id}", "owner")
        return owner.decode() if owner else None

    async def set_draining(self, draining: bool) -> None:
        self._draining = draining
        with contextlib.suppress(FleetUnavailable):
            await self.heartbeat()

    async def instances(self) -> list[str]:
        now_ms = int(time.time() * 1000)
        async with self._redis():
            members = await self._client.zrangebyscore(MEMBERS_KEY, now_ms, "+inf")
        names = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
        return sorted(names | {self.instance})

    # ------------------------------------------------------------------ heartbeat

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            with contextlib.suppress(FleetUnavailable):
                await self.heartbeat()

    async def heartbeat(self) -> None:
        """Re-assert everything this instance owns; probe our own control subscription.
        Raises :class:`FleetUnavailable` when Redis is down (only the caller's concern)."""
        calls = self.live_calls()
        now_ms = int(time.time() * 1000)
        key = f"{PREFIX}inst:{self.instance}"
        state = "draining" if self._draining else "ready"
        member_expiry = now_ms + int(3 * self._heartbeat_s * 1000)
        async with self._redis():
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping={"state": state, "calls": len(calls), "updated": now_ms})
                pipe.pexpire(key, member_expiry - now_ms)
                if self._draining:
                    pipe.zrem(READY_KEY, self.instance)
                else:
                    pipe.zadd(READY_KEY, {self.instance: member_expiry})
                pipe.zadd(MEMBERS_KEY, {self.instance: member_expiry})
                pipe.zremrangebyscore(MEMBERS_KEY, "-inf", now_ms)
                for call_id, path in calls.items():
                    call_key = f"{PREFIX}call:{call_id}"
                    pipe.hset(call_key, mapping={"owner": self.instance, "path": path})
                    pipe.pexpire(call_key, 2 * self._lease_ms)
                await pipe.execute()
            self._fleet_active = int(
                await self._renew(keys=[FLEET_KEY], args=[self._lease_ms, *calls])
            )
            probe = self._seal.seal(self._channel, {"op": "probe"})
            listening = await self._client.publish(self._channel, probe)
        lost = not listening and self._subscribed.is_set()  # else it is resubscribing already
        if lost and self._listener is not None and not self._stopping:
            logger.warning("fleet: control subscription lost; subscribing again")
            self._listener.cancel()
            self._subscribed.clear()
            self._listener = asyncio.create_task(self._listen(), name="fleet-listener")

    # ------------------------------------------------------------------ control messages

    async def request(
        self, instance: str, message: dict[str, Any], timeout_s: float
    ) -> dict[str, Any] | None:
        req = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[req] = future
        channel = f"{PREFIX}ctl:{instance}"
        body = self._seal.seal(channel, {**message, "req": req, "reply_to": self.instance})
        try:
            async with self._redis():
                receivers = await self._client.publish(channel, body)
            if not receivers:
                return None  # nobody listens there: the instance is gone or lost its channel
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(req, None)

    async def _listen(self) -> None:
        """Our control channel, resubscribed after any failure (with backoff)."""
        backoff = 0.1
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                backoff = 0.1
                while True:  # short reads: under the client's socket timeout
                    message = await pubsub.get_message(timeout=0.2)
                    if message is not None:
                        self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed.clear()
                logger.debug("fleet: control listener: %s", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _on_message(self, data: bytes | str) -> None:
        """A message on our channel: a reply to one of our requests, or a request to act on
        (one task each, at most :data:`MAX_CONTROL_TASKS` at once). Unsealed, forged, stale or
        replayed messages are refused with one (rate-limited) warning and change nothing."""
        try:
            message = self._seal.open(self._channel, data)
        except Refused as refused:
            self._warn(
                f"control:{refused.reason}",
                f"fleet: control message refused ({refused.reason}); is someone else publishing "
                f"on {self._channel}? (secure Redis: docs/fleet.md)",
            )
            return
        if not isinstance(message, dict) or message.get("op") == "probe":
            return
        if "reply" in message:
            future = self._waiting.get(str(message.get("req")))
            if future is not None and not future.done() and isinstance(message["reply"], dict):
                future.set_result(message["reply"])
            return
        if len(self._tasks) >= MAX_CONTROL_TASKS:
            self._warn("control:busy", "fleet: control message refused (too many at once)")
            return
        task = asyncio.create_task(self._answer(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: dict[str, Any]) -> None:
        handler = self.on_control
        try:
            reply = await handler(message) if handler is not None else {"ok": False}
        except Exception as exc:
            logger.exception("fleet: control message %r failed", message.get("op"))
            reply = {"ok": False, "error": type(exc).__name__}
        reply_to = message.get("reply_to")
        if isinstance(reply_to, str):
            channel = f"{PREFIX}ctl:{reply_to}"
            body = self._seal.seal(channel, {"req": message.get("req"), "reply": reply})
            with contextlib.suppress(FleetUnavailable):
                async with self._redis():
                    await self._client.publish(channel, body)
