"""How alert rules, alerts and notifications are scoped (registered in ``MonitoringConfig.ready``).

- A cluster's rules: its owners manage them, its members read them.  Rules for every cluster
  (no cluster) are for administrators.
- A cluster's alerts: its owners see and handle all of them; its members see those about the
  cluster itself and its nodes (``cluster_wide``), not those about pods and workloads, which only
  the owners and the project's people may see.
- A project's rules: its owners manage them, its other people read them.  Alerts about a project
  (a project rule's, or about an object in one of its namespaces): everyone in the project sees
  them; its owners and members acknowledge and silence them.
- Notifiers: a cluster's are managed (and seen) by its owners, a project's by its owners and
  the cluster's; those of neither are the administrators'.  Notifications and delivery attempts
  follow their notifier.  A rule may name only notifiers its author may see (the serializers
  restrict every reference), so no tenant sends to, or tests, another's.
"""

from clusters.permissions import BASICS, OWNER_ONLY
from portal import events
from portal import permissions as p
from projects.permissions import ADMINISTRATION, ALL_ROLES
from projects.roles import PROJECT_MEMBER, PROJECT_OWNER

NOTIFIERS = {action: frozenset({PROJECT_OWNER}) for action in p.ACTIONS}
ALERT_HANDLING = {p.VIEW: ALL_ROLES, p.CHANGE: frozenset({PROJECT_OWNER, PROJECT_MEMBER})}


def register():
    from monitoring.evaluate import FEED_ALERTS
    from monitoring.models import Alert, AlertRule, DeliveryAttempt, Notification, Notifier, UsageSample

    p.register(AlertRule, p.Grant("cluster", "cluster", BASICS), p.Grant("project", "project", ADMINISTRATION))
    p.register(
        Alert,
        p.Grant("cluster", "cluster", OWNER_ONLY),
        p.Grant("cluster", "cluster_wide", {p.VIEW: BASICS[p.VIEW]}),
        p.Grant("project", "project", ALERT_HANDLING),
    )
    # Usage: the cluster's and its nodes' for its members; a namespace's, workload's or project's
    # for the project's people; all of it for the owners.
    p.register(
        UsageSample,
        p.Grant("cluster", "cluster", OWNER_ONLY),
        p.Grant("cluster", "cluster_wide", {p.VIEW: BASICS[p.VIEW]}),
        p.Grant("project", "project", {p.VIEW: ALL_ROLES}),
    )
    for model, path in ((Notifier, ""), (Notification, "notifier__"), (DeliveryAttempt, "notification__notifier__")):
        p.register(
            model,
            p.Grant("cluster", f"{path}cluster", OWNER_ONLY),
            p.Grant("project", f"{path}project", NOTIFIERS),
        )
    events.register_feed(FEED_ALERTS)
