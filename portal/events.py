"""Live events: one ``emit`` helper, sent to websocket groups only after the transaction commits."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

# Groups are named "<kind>-<id>" for objects, or a bare feed name.
FEED_CLUSTERS = "clusters"


def group_name(kind, pk=None):
    return kind if pk is None else f"{kind}-{pk}"


def _send(groups, message):
    layer = get_channel_layer()
    if layer is None:
        return
    for group in groups:
        try:
            async_to_sync(layer.group_send)(group, {**message, "group": group})
        except Exception:  # a broken Redis must not fail the change that was already committed
            log.exception("could not send live event %s to %s", message.get("event"), group)


def emit(event, data, *groups):
    """Send ``{"event": event, "data": data}`` to ``groups`` once the current transaction commits."""
    message = {"type": "live.event", "event": event, "data": data}
    transaction.on_commit(lambda: _send(groups, message))
