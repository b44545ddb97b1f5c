"""The websocket at ``/ws/``: a signed-in client subscribes to groups (``cluster-<id>``,
``operation-<id>``, or the ``clusters`` feed) and receives live events.

Joining a group is allowed only after the same ``restrict`` check the API does.  Events on the
``clusters`` feed are checked per connection before they are forwarded, so a user only hears of
clusters they may see.
"""

import re

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal.events import FEED_CLUSTERS
from portal.permissions import VIEW

_GROUP = re.compile(r"^(cluster|operation|project)-([0-9]{1,18})$")
MAX_SUBSCRIPTIONS = 200


def _model_for(kind):
    from clusters.models import Cluster
    from portal.models import Operation
    from projects.models import Project

    return {"cluster": Cluster, "operation": Operation, "project": Project}[kind]


def may_join(user, group):
    """May ``user`` listen to ``group``?  The one permission mechanism decides."""
    if group == FEED_CLUSTERS:
        return user.is_authenticated and user.is_active
    match = _GROUP.match(group)
    if not match:
        return False
    model = _model_for(match.group(1))
    return model.objects.restrict(user, VIEW).filter(pk=int(match.group(2))).exists()


def may_see_cluster(user, cluster_id):
    from clusters.models import Cluster

    return Cluster.objects.restrict(user, VIEW).filter(pk=cluster_id).exists()


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=4401)
            return
        self.user = user
        self.groups_joined = set()
        await self.accept()

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "error": "messages must be JSON objects"})
            return
        action, group = content.get("action"), content.get("group")
        if action not in ("subscribe", "unsubscribe") or not isinstance(group, str):
            await self.send_json({"type": "error", "error": 'send {"action": "subscribe"|"unsubscribe", "group": "cluster-<id>"}'})
            return
        if action == "unsubscribe":
            self.groups_joined.discard(group)
            await self.channel_layer.group_discard(group, self.channel_name)
            await self.send_json({"type": "unsubscribed", "group": group})
            return
        if len(self.groups_joined) >= MAX_SUBSCRIPTIONS:
            await self.send_json({"type": "error", "group": group, "error": f"at most {MAX_SUBSCRIPTIONS} subscriptions"})
            return
        if not await database_sync_to_async(may_join)(self.user, group):
            await self.send_json({"type": "error", "group": group, "error": "no such group, or no permission to follow it"})
            return
        self.groups_joined.add(group)
        await self.channel_layer.group_add(group, self.channel_name)
        await self.send_json({"type": "subscribed", "group": group})

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            await super().receive(text_data=text_data, bytes_data=bytes_data, **kwargs)
        except ValueError:
            await self.send_json({"type": "error", "error": "messages must be JSON"})

    async def live_event(self, message):
        data = message.get("data") or {}
        group = message.get("group")
        if group == FEED_CLUSTERS:
            cluster_id = data.get("id")
            if f"cluster-{cluster_id}" in self.groups_joined:
                return  # the same event arrives through the cluster's own group
            if message["event"] == "cluster.deleted" or not await database_sync_to_async(may_see_cluster)(self.user, cluster_id):
                return
        await self.send_json({"type": "event", "group": group, "event": message["event"], "data": data})
