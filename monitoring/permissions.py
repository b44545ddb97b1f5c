"""How alert rules, alerts and notifications are scoped (registered in ``MonitoringConfig.ready``).

- A cluster's rules and alerts: its owners manage them, its members read them.  Rules for every
  cluster (no cluster) are for administrators.
- A project's rules: its owners manage them, its other people read them.  Alerts about a project
  (a project rule's, or about an object in one of its namespaces): everyone in the project sees
  them; its owners and members acknowledge and silence them.
- Notifiers, notifications and delivery attempts are not registered: administrators only.
"""

from clusters.permissions import BASICS
from portal import events
from portal import permissions as p
from projects.permissions import ADMINISTRATION, ALL_ROLES
from projects.roles import PROJECT_MEMBER, PROJECT_OWNER

ALERT_HANDLING = {p.VIEW: ALL_ROLES, p.CHANGE: frozenset({PROJECT_OWNER, PROJECT_MEMBER})}


def register():
    from monitoring.evaluate import FEED_ALERTS
    from monitoring.models import Alert, AlertRule

    p.register(AlertRule, p.Grant("cluster", "cluster", BASICS), p.Grant("project", "project", ADMINISTRATION))
    p.register(Alert, p.Grant("cluster", "cluster", BASICS), p.Grant("project", "project", ALERT_HANDLING))
    events.register_feed(FEED_ALERTS)
