"""The websocket at ``/ws/``: a signed-in client subscribes to topics (``cluster-<id>``,
``project-<id>``, ``operation-<id>``, or the ``clusters`` feed) and receives live events; a
``{"action": "ping"}`` is answered ``{"type": "pong"}`` through the channel layer (the page's
"Live updates on" stays true only while those answers come).

A topic is followed only after the same ``restrict`` check the API makes, and then only through the
channel groups of the audience tokens its user holds (portal.events): a cluster page hears of the
rows its reader may see and of nothing else.  Access is checked again whenever it may have changed
(portal.signals sends ``live.access``) and every ``RECHECK_SECONDS`` anyway: groups no longer held
are left at once, a topic no longer visible is dropped (``unsubscribed``, with a reason), and the
socket of a user deactivated or signed out is closed after a ``closed`` message saying why.
"""

import asyncio
import collections
import logging
import random
import re
import time
from importlib import import_module

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from portal import events, permissions

log = logging.getLogger(__name__)

_TOPIC = re.compile(r"^([a-z]{1,30})-([0-9]{1,18})$")
MAX_SUBSCRIPTIONS = 200
RECHECK_SECONDS = 30
# Channel layer group memberships expire (channels_redis: after a day); joined again this often.
REJOIN_SECONDS = 3600
SEEN_EVENTS = 256  # ids of recent events, to drop the copy that arrives through a second group

CLOSE_SIGNED_OUT = 4401
CLOSE_NO_ACCESS = 4403


def follow(user, topics):
    """``{topic: where its object lies (permissions.scopes_of), or None when user may not follow it}``,
    one query per kind of object however many topics (a dashboard follows every cluster)."""
    found, wanted = {}, collections.defaultdict(dict)
    for topic in topics:
        match = _TOPIC.match(topic)
        if events.is_feed(topic):
            found[topic] = {} if user.is_authenticated and user.is_active else None
        elif match and events.topic_model(match.group(1)) is not None:
            wanted[match.group(1)][int(match.group(2))] = topic
        else:
            found[topic] = None
    for kind, by_pk in wanted.items():
        visible = {obj.pk: obj for obj in events.topic_model(kind).objects.restrict(user, permissions.VIEW).filter(pk__in=list(by_pk))}
        for pk, topic in by_pk.items():
            found[topic] = permissions.scopes_of(visible[pk]) if pk in visible else None
    return found


def topic_groups(user, topics, held):
    """``{topic: the channel groups user (holding the tokens held) joins to follow it, or None when
    they may not follow it}``."""
    return {
        topic: None if within is None else events.audience_groups(topic, permissions.tokens_within(held, within))
        for topic, within in follow(user, topics).items()
    }


def current_user(session_key, user_id):
    """``(user, None, None)`` with the user read afresh, while the socket's session still signs
    them in; else ``(None, close code, reason)``."""
    user = get_user_model()._default_manager.filter(pk=user_id).first()
    if user is None:
        return None, CLOSE_NO_ACCESS, "your account was removed"
    if not user.is_active:
        return None, CLOSE_NO_ACCESS, "your account was deactivated"
    if session_key:
        session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        session_hash = session.get(HASH_SESSION_KEY) or ""
        hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
        if str(session.get(SESSION_KEY)) != str(user.pk) or not any(constant_time_compare(session_hash, h) for h in hashes):
            return None, CLOSE_SIGNED_OUT, "you were signed out"
    return user, None, None


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=CLOSE_SIGNED_OUT)
            return
        self.user = user
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        self.topics = {}  # topic -> the channel groups joined for it
        self.joined = set()  # all of them
        self.held = None  # the user's audience tokens, read at the first subscription
        self.seen = collections.deque(maxlen=SEEN_EVENTS)
        self.ended = False
        self.lock = asyncio.Lock()
        await self.channel_layer.group_add(events.user_group(user.pk), self.channel_name)
        await self.channel_layer.group_add(events.MISSED_GROUP, self.channel_name)
        await self.accept()
        self.rechecks = asyncio.create_task(self._recheck_every())

    async def disconnect(self, code):
        if not hasattr(self, "lock"):
            return
        self.ended = True
        self.rechecks.cancel()
        for group in {*self.joined, events.user_group(self.user.pk), events.MISSED_GROUP}:
            await self.channel_layer.group_discard(group, self.channel_name)

    # --- what the client asks -----------------------------------------------------------------

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "error": "messages must be JSON objects"})
            return
        action, topic = content.get("action"), content.get("group")
        if action == "ping":
            # Answered through the channel layer, so a pong proves events can reach this socket.
            await self.channel_layer.send(self.channel_name, {"type": "live.pong", "id": str(content.get("id", ""))[:40]})
            return
        if action not in ("subscribe", "unsubscribe") or not isinstance(topic, str):
            await self.send_json({"type": "error", "error": 'send {"action": "subscribe"|"unsubscribe", "group": "cluster-<id>"} or {"action": "ping"}'})
            return
        async with self.lock:
            if action == "unsubscribe":
                self.topics.pop(topic, None)
                await self._join(set().union(*self.topics.values()))
                await self.send_json({"type": "unsubscribed", "group": topic})
                return
            if topic not in self.topics and len(self.topics) >= MAX_SUBSCRIPTIONS:
                await self.send_json({"type": "error", "group": topic, "error": f"at most {MAX_SUBSCRIPTIONS} subscriptions"})
                return
            groups = await database_sync_to_async(self._groups_for)(topic)
            if groups is None:
                await self.send_json({"type": "error", "group": topic, "error": "no such group, or no permission to follow it"})
                return
            self.topics[topic] = groups
            await self._join(self.joined | groups)
            await self.send_json({"type": "subscribed", "group": topic})

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            await super().receive(text_data=text_data, bytes_data=bytes_data, **kwargs)
        except ValueError:
            await self.send_json({"type": "error", "error": "messages must be JSON"})

    def _groups_for(self, topic):
        if self.held is None:
            self.held = permissions.entitlements(self.user)
        return topic_groups(self.user, [topic], self.held)[topic]

    async def _join(self, groups, refresh=False):
        """Make ``groups`` the joined set.  ``joined`` changes before any await, so an event queued
        through a group being left is refused from this moment."""
        left, added = self.joined - groups, (groups if refresh else groups - self.joined)
        self.joined = set(groups)
        for group in left:
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in added:
            await self.channel_layer.group_add(group, self.channel_name)

    # --- access checked again -----------------------------------------------------------------

    async def _recheck(self, refresh=False):
        async with self.lock:
            if self.ended:
                return
            user, code, reason = await database_sync_to_async(current_user)(self.session_key, self.user.pk)
            if user is None:
                await self._end(code, reason)
                return
            held, plan = await database_sync_to_async(self._plan)(user, list(self.topics))
            self.user, self.held = user, held
            self.topics = {topic: groups for topic, groups in plan.items() if groups is not None}
            await self._join(set().union(*self.topics.values()), refresh=refresh)
            if refresh:
                await self.channel_layer.group_add(events.user_group(user.pk), self.channel_name)
                await self.channel_layer.group_add(events.MISSED_GROUP, self.channel_name)
            for topic, groups in plan.items():
                if groups is None:
                    await self.send_json({"type": "unsubscribed", "group": topic, "reason": "you may no longer follow this"})

    @staticmethod
    def _plan(user, topics):
        held = permissions.entitlements(user)
        return held, topic_groups(user, topics, held)

    async def _recheck_every(self):
        rejoined = time.monotonic()
        while not self.ended:
            await asyncio.sleep(RECHECK_SECONDS * random.uniform(0.75, 1.25))  # sockets opened together spread out
            try:
                refresh = time.monotonic() - rejoined > REJOIN_SECONDS
                await self._recheck(refresh=refresh)
                rejoined = time.monotonic() if refresh else rejoined
            except Exception:
                log.exception("live: could not recheck the access of user %s", self.user.pk)

    async def _end(self, code, reason):
        self.ended = True
        self.joined = set()
        await self.send_json({"type": "closed", "code": code, "reason": reason})
        await self.close(code=code, reason=reason)

    # --- what the channel layer brings ----------------------------------------------------------

    async def live_access(self, message):
        await self._recheck()

    async def live_signed_out(self, message):
        if self.session_key and message.get("session") == events.session_tag(self.session_key):
            async with self.lock:
                await self._end(CLOSE_SIGNED_OUT, "you signed out")

    async def live_missed(self, message):
        """This socket's server process dropped live events while Redis could not be reached: the
        page fetches what it shows afresh, through the same views as a reload."""
        if not self.ended:
            await self.send_json({"type": "missed"})

    async def live_pong(self, message):
        await self.send_json({"type": "pong", "id": message.get("id", "")})

    async def live_events(self, message):
        """Several events sent to one group in one message (``portal.events`` bundles a batch's
        events by group): each is handled as if it came alone."""
        for event in message.get("events") or []:
            await self.live_event({**event, "group": message.get("group")})

    async def live_event(self, message):
        group = message.get("group")
        if self.ended or group not in self.joined:
            return  # sent to a group this socket has just left
        event_id = message.get("id")
        if event_id in self.seen:
            return
        self.seen.append(event_id)
        topic = group.split(".", 1)[0]
        await self.send_json({"type": "event", "group": topic, "event": message["event"], "data": message.get("data") or {}})
