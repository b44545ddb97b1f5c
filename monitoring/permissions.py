"""How alert rules and alerts are scoped (registered in ``MonitoringConfig.ready``).  Notifiers
are not registered: administrators only."""

from clusters.permissions import BASICS
from portal import permissions as p


def register():
    from monitoring.models import Alert, AlertRule

    # A cluster's rules and alerts: its owners manage them, its members read them.  Rules for
    # every cluster (no cluster) are for administrators.
    p.register(AlertRule, p.Grant("cluster", "cluster", BASICS))
    p.register(Alert, p.Grant("cluster", "cluster", BASICS))
