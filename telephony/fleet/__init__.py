"""Fleet state: what several workers and machines share to act as one service.

:class:`~.state.FleetState` is the interface; :class:`~.state.LocalState` keeps it in this
process (no ``REDIS_URL``: one instance, today's behaviour) and :class:`~.redis_state.RedisState`
keeps it in Redis (Redis OSS 7.0+ or Valkey 7.2+, through ``redis.asyncio``). Shared through it:
single-use claims (stream-token nonces, SIP deliveries), fleet capacity with leases that a
crashed instance's calls give back on their own, which instance owns each live call, instance
membership with draining state, and control messages to a call's owner.

Every atomic step touches one key (so the same code runs on Redis Cluster), and nothing on the
per-frame media path awaits it. Knows nothing of calls, Twilio or OpenAI.
"""

from .state import ControlHandler, FleetState, FleetUnavailable, LocalState

__all__ = ["ControlHandler", "FleetState", "FleetUnavailable", "LocalState"]
