"""Live events: one ``emit`` helper, sent only after the transaction commits, and only to those the
permission engine lets view the object the event tells of.

A client subscribes to *topics*: a page about one object (``cluster-<id>``, ``project-<id>``,
``operation-<id>``) or a feed (``clusters``).  Apps register which kinds of object and which feeds
may be followed (``register_topic``, ``register_feed``).  Behind a topic the channel groups are
``<topic>.<audience token>`` (``cluster-7.project-3.read-only``): ``emit`` sends an event to the
groups of its object's audience (``permissions.audience``) on each topic it belongs to, and a
listener joins the groups of the tokens it holds (``permissions.entitlements``), so a cluster page
carries exactly the rows the API would show its reader.  An event sent to two of a listener's
groups (an owner who is also a project member) carries one id, and the consumer drops the repeat.

When someone's access may have changed (a role binding, a group membership, a deactivation),
``access_changed`` tells their open sockets, which recompute their groups at once (portal.signals).
"""

import asyncio
import hashlib
import logging
import os
import re
import threading
import time
import uuid
import weakref
from contextlib import contextmanager

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from portal import permissions

log = logging.getLogger(__name__)

# Channel group names: ASCII letters, digits, "-", "_" and "." only, shorter than 100.
_GROUP_NAME = re.compile(r"^[A-Za-z0-9._-]{1,99}$")

_topics = {}  # kind -> model: "cluster" -> Cluster
_feeds = set()


def register_topic(kind, model):
    """Clients may follow ``<kind>-<id>``: events about one ``model`` row and what lies in it, for
    whoever may view that row."""
    _topics[kind] = model


def register_feed(name):
    """Clients may follow the feed ``name`` (events sent to it reach whoever may view their object)."""
    _feeds.add(name)


def topic_model(kind):
    return _topics.get(kind)


def is_feed(name):
    return name in _feeds


def group_name(kind, pk=None):
    """The topic of one object (``cluster-7``), or a feed's name."""
    return kind if pk is None else f"{kind}-{pk}"


def audience_groups(topic, tokens):
    """The channel groups of ``tokens`` on ``topic``."""
    groups = set()
    for token in tokens:
        group = f"{topic}.{token}"
        if _GROUP_NAME.match(group):
            groups.add(group)
        else:
            log.error("live events: %r is not a valid channel group name; nobody can hear it", group)
    return groups


# While Redis cannot be reached, live events are dropped at once instead of each waiting for the
# client's retries: the change itself is already committed, and pages catch up when they reconnect.
# One send is tried again every OUTAGE_RETRY_SECONDS to notice that Redis is back, and a probe
# thread tries as often by itself.  When a send gets through again, every open socket is told that
# events were missed (``MISSED_GROUP``: the message says nothing else, so it is everyone's), and its
# page catches up as after a reconnect: a page that reconnected before this process could send
# again would otherwise never hear of what was dropped in between.
OUTAGE_RETRY_SECONDS = 2.0
MISSED_GROUP = "live-missed"
_MISSED = {"type": "live.missed"}
_outage = {"until": 0.0, "dropped": 0}
_outage_lock = threading.Lock()


def _probe_until_back():
    while True:
        time.sleep(OUTAGE_RETRY_SECONDS)
        with _outage_lock:
            if _outage["until"] == 0.0:  # a send got through meanwhile
                return
        _send_many([([MISSED_GROUP], _MISSED)], probe=True)


# At most this many group sends at once on a loop: each holds one of the Redis client pool's
# connections (100 at most), and a batch may reach hundreds of groups, from many threads at once.
SEND_CONCURRENCY = 32
_send_slots = weakref.WeakKeyDictionary()  # event loop -> asyncio.Semaphore


def _slots():
    loop = asyncio.get_running_loop()
    slots = _send_slots.get(loop)
    if slots is None:
        slots = _send_slots[loop] = asyncio.Semaphore(SEND_CONCURRENCY)
    return slots


_sender = {"loop": None, "pid": None}
_sender_lock = threading.Lock()
SEND_TIMEOUT = 30


def _on_sender_loop(coroutine_function):
    """Run a send on this process's sending loop (a thread of its own) and wait for it.  One loop
    for the process's life keeps the channel layer's Redis connections open between sends, where
    ``async_to_sync`` from a plain thread makes a new loop, and so new connections, every time."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # called inside a loop's thread (never in Corral's code): the usual way
        return async_to_sync(coroutine_function)()
    with _sender_lock:
        if _sender["loop"] is None or _sender["pid"] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="live-events-sender", daemon=True).start()
            _sender.update(loop=loop, pid=os.getpid())
        loop = _sender["loop"]
    return asyncio.run_coroutine_threadsafe(coroutine_function(), loop).result(SEND_TIMEOUT)


def _send(groups, message):
    _send_many([(groups, message)])


def _send_many(items, probe=False):
    """Send each ``(groups, message)`` in one trip to the channel layer."""
    layer = get_channel_layer()
    items = [(groups, message) for groups, message in items if groups]
    if layer is None or not items:
        return
    with _outage_lock:
        if not probe and time.monotonic() < _outage["until"]:
            _outage["dropped"] += len(items)
            return

    by_group = {}  # each group's messages in order; the groups side by side
    for groups, message in items:
        for group in groups:
            by_group.setdefault(group, []).append(message)

    async def send_group(group, messages):
        # Live events for one group go as one message (the consumer takes them in order): a batch
        # of a hundred pod changes is one send per group, not a hundred.
        events = [m for m in messages if m.get("type") == "live.event"]
        async with _slots():
            if len(events) > 1:
                await layer.group_send(group, {"type": "live.events", "group": group,
                                               "events": [{k: v for k, v in m.items() if k != "type"} for m in events]})
            for message in messages:
                if len(events) <= 1 or message.get("type") != "live.event":
                    await layer.group_send(group, {**message, "group": group})

    async def send_all():
        await asyncio.gather(*(send_group(group, messages) for group, messages in by_group.items()))

    try:
        _on_sender_loop(send_all)
    except Exception as exc:  # a broken Redis must not fail the change that was already committed
        with _outage_lock:
            first = _outage["until"] == 0.0
            _outage["until"] = time.monotonic() + OUTAGE_RETRY_SECONDS
            if not probe:
                _outage["dropped"] += len(items)
        if first:
            message = items[0][1]
            log.warning("could not send live event %s (%s); live events are dropped until the channel layer answers",
                        message.get("event") or message.get("type"), exc)
            threading.Thread(target=_probe_until_back, name="live-events-probe", daemon=True).start()
        return
    with _outage_lock:
        recovered = _outage["until"] != 0.0
        if recovered:
            log.warning("live events flow again; %d were dropped while the channel layer could not be reached", _outage["dropped"])
            _outage.update(until=0.0, dropped=0)
    if recovered and not probe:
        _send_many([([MISSED_GROUP], _MISSED)], probe=True)


_batch = threading.local()


@contextmanager
def batched():
    """Within this block (inside the transaction that makes the changes), ``emit`` gathers its
    events and they go together after the commit: one trip to the channel layer, not one each."""
    if getattr(_batch, "items", None) is not None:
        yield
        return
    _batch.items = []
    try:
        yield
    finally:
        items, _batch.items = _batch.items, None
        if items:
            transaction.on_commit(lambda: _send_many(items))


def emit(event, data, about, *topics):
    """Send ``{"event": event, "data": data}`` on ``topics`` once the current transaction commits,
    to whoever may view ``about``: a model instance (saved, or about to be deleted), or audience
    tokens computed by the engine (``permissions.aggregate_audience`` for a figure summed over
    many rows)."""
    tokens = about if isinstance(about, (set, frozenset)) else permissions.audience(about)
    groups = sorted({group for topic in topics for group in audience_groups(topic, tokens)})
    message = {"type": "live.event", "id": uuid.uuid4().hex, "event": event, "data": data}
    if getattr(_batch, "items", None) is not None:
        _batch.items.append((groups, message))
        return
    transaction.on_commit(lambda: _send(groups, message))


# --- telling open sockets that someone's access changed ----------------------------------------


def user_group(user_id):
    """Each signed-in socket listens here for news about its user's access."""
    return f"user-{user_id}"


def session_tag(session_key):
    """Names a session without revealing its key (group messages pass through Redis)."""
    return hashlib.sha256(f"corral-live:{session_key}".encode()).hexdigest()[:32]


def access_changed(user_ids):
    """After the transaction commits, the open sockets of ``user_ids`` recompute what they may
    follow (and close if their user is gone or deactivated)."""
    user_ids = sorted({pk for pk in user_ids if pk is not None})
    if user_ids:
        message = {"type": "live.access"}
        transaction.on_commit(lambda: _send([user_group(pk) for pk in user_ids], message))


def session_ended(user_id, session_key):
    """The socket opened with this session closes (the user signed out there)."""
    if user_id is not None and session_key:
        message = {"type": "live.signed_out", "session": session_tag(session_key)}
        transaction.on_commit(lambda: _send([user_group(user_id)], message))
