"""The Redis channel layer, with its blocking pops kept inside the client's socket timeout.

channels_redis waits for a socket's messages with ``BZPOPMIN`` for ``brpop_timeout`` seconds (5),
and Corral's Redis clients give up on a read after ``PORTAL_REDIS_TIMEOUT_SECONDS`` (5).  With the
two equal, every pop on a quiet channel raced the socket timeout: the client dropped the connection
and reconnected (the retry policy hid the error), and a message Redis popped just as the client
gave up was lost.  Here a pop waits at most ``blocking_pop_seconds``, half the socket timeout.
"""

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer


class RedisChannelLayer(_RedisChannelLayer):
    def __init__(self, *args, blocking_pop_seconds=None, **kwargs):
        super().__init__(*args, **kwargs)
        if blocking_pop_seconds is not None:
            if not isinstance(blocking_pop_seconds, int) or blocking_pop_seconds < 1:
                raise ValueError(f"blocking_pop_seconds must be a whole number of seconds, at least 1: {blocking_pop_seconds!r}")
            self.brpop_timeout = blocking_pop_seconds
