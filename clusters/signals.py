"""Signals other apps may follow without the clusters app knowing them."""

from django.dispatch import Signal

# Sent after a cluster's inventory changed and was committed (the watcher, at most about once a
# second per cluster) or its state changed (health checks): ``cluster_id`` and ``resources``, the
# names of what changed ("nodes", "pods", ..., or "cluster" for its state).
inventory_changed = Signal()
