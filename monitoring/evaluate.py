"""Evaluating alert rules against what Corral knows of a cluster.

Each condition is one query over the inventory (kept live by the watcher), giving the targets that
match now: ``{target: Match}``.  ``evaluate_rule`` compares them with the rule's open alerts: a new
match is *pending* until it has held ``for_seconds`` (at once *firing* with 0), a firing alert that
no longer matches is *resolved*, a pending one that no longer matches is dropped.  Every change is
pushed live (``alert.updated``) and makes the alert's group due for a notification.

Evaluation runs after the watcher's changes (``clusters.signals.inventory_changed``: only the
conditions the changed resources affect) and in a periodic pass over every cluster.
"""

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from clusters.models import Cluster, ClusterEvent, ClusterState, Node, Pod, Workload
from monitoring import delivery
from monitoring.models import OPEN_STATES, Alert, AlertCondition, AlertRule, AlertState
from portal import events
from portal.events import emit, group_name

log = logging.getLogger(__name__)

FEED_ALERTS = "alerts"
EVENT_WINDOW = timedelta(minutes=10)  # a Warning event keeps its alert firing this long after it was last seen

# Which conditions a change of each watched resource may affect.
AFFECTED = {
    "cluster": {AlertCondition.CLUSTER_UNAVAILABLE, AlertCondition.KUBERNETES_EOL},
    "nodes": {AlertCondition.NODE_NOT_READY, AlertCondition.CPU_REQUESTED, AlertCondition.MEMORY_REQUESTED},
    "control-plane": {AlertCondition.CONTROL_PLANE},
    "pods": {AlertCondition.POD_NOT_RUNNING, AlertCondition.POD_NOT_SCHEDULED, AlertCondition.POD_RESTARTS, AlertCondition.POD_CRASH_LOOPING,
             AlertCondition.CPU_REQUESTED, AlertCondition.MEMORY_REQUESTED},
    "deployments": {AlertCondition.WORKLOAD_UNAVAILABLE},
    "statefulsets": {AlertCondition.WORKLOAD_UNAVAILABLE},
    "daemonsets": {AlertCondition.WORKLOAD_UNAVAILABLE},
    "workloads": {AlertCondition.WORKLOAD_UNAVAILABLE},  # Swarm services (clusters.swarm.inventory)
    "events": {AlertCondition.WARNING_EVENT},
    "usage": {AlertCondition.CPU_USAGE, AlertCondition.MEMORY_USAGE},
}


@dataclass
class Match:
    message: str
    value: float | None = None
    labels: dict = field(default_factory=dict)
    project_id: int | None = None
    namespaced: bool = False  # about something in a namespace (not the cluster or a node)


def _earliest(*times):
    given = [t for t in times if t is not None]
    return min(given) if given else None


def affected_conditions(resources):
    return set().union(*(AFFECTED.get(r, set()) for r in resources)) if resources else set()


# --- conditions ---------------------------------------------------------------------------------
#
# Each condition takes a rule (its threshold, selector, project) and the ids of the clusters to
# look at, and answers {cluster id: {target: Match}} in one query: the periodic pass asks once for
# every cluster whose rules share a condition, threshold, selector and project.


def _by_cluster(rows):
    matches = defaultdict(dict)
    for cluster_id, target, match in rows:
        matches[cluster_id][target] = match
    return matches


def _namespaced(rule, queryset):
    selector = rule.selector or {}
    if rule.project_id:
        queryset = queryset.filter(namespace__project_id=rule.project_id)
    if selector.get("namespace"):
        queryset = queryset.filter(namespace__name=selector["namespace"])
    if selector.get("labels"):
        queryset = queryset.filter(labels__contains=selector["labels"])
    return queryset


def _nodes(rule, queryset):
    selector = rule.selector or {}
    if selector.get("node"):
        queryset = queryset.filter(name=selector["node"])
    if selector.get("labels"):
        queryset = queryset.filter(labels__contains=selector["labels"])
    return queryset


def cluster_unavailable(rule, cluster_ids):
    rows = Cluster.objects.filter(pk__in=cluster_ids, state=ClusterState.UNAVAILABLE).values_list("pk", "name", "last_error")
    return _by_cluster(
        (pk, f"cluster/{name}", Match(f"cluster {name} is unavailable: {error or 'no answer'}"[:1000], labels={"cluster": name}))
        for pk, name, error in rows
    )


def node_not_ready(rule, cluster_ids):
    rows = _nodes(rule, Node.objects.filter(cluster_id__in=cluster_ids, ready=False)).values_list("cluster_id", "name", "conditions")

    def match(name, conditions):
        ready = next((c for c in conditions or [] if c.get("type") == "Ready"), None)
        why = f"{ready.get('reason') or ready.get('status')}: {ready.get('message') or ''}".strip(": ") if ready else "no Ready condition"
        return Match(f"node {name} is not ready ({why})"[:1000], labels={"node": name})

    return _by_cluster((cluster_id, f"node/{name}", match(name, conditions)) for cluster_id, name, conditions in rows)


def _pod_matches(rule, queryset, describe, value=None, counts=None):
    """``value``: "restarts" (the pod's count) or "counts" (``counts[pod id]``, restarts in a window)."""
    queryset = _namespaced(rule, queryset)
    selector = rule.selector or {}
    if selector.get("node"):
        queryset = queryset.filter(node_name=selector["node"])
    rows = queryset.values_list("cluster_id", "pk", "name", "namespace__name", "namespace__project_id", "phase", "restarts", "node_name")
    return _by_cluster(
        (cluster_id, f"pod/{namespace}/{name}", Match(
            describe(namespace, name, phase, counts[pk] if value == "counts" else restarts)[:1000],
            value={"restarts": restarts, "counts": (counts or {}).get(pk)}.get(value),
            labels={"namespace": namespace, "pod": name, **({"node": node_name} if node_name else {})},
            project_id=rule.project_id or project_id, namespaced=True,
        ))
        for cluster_id, pk, name, namespace, project_id, phase, restarts, node_name in rows
    )


def pod_not_running(rule, cluster_ids):
    queryset = Pod.objects.filter(cluster_id__in=cluster_ids).exclude(phase__in=["Running", "Succeeded"])
    # A Swarm keeps the tasks it replaced (history): only the tasks meant to run count.
    queryset = queryset.exclude(Q(cluster__kind="swarm") & ~Q(details__desired_state="running"))
    return _pod_matches(rule, queryset, lambda ns, name, phase, restarts: f"pod {ns}/{name} is {phase or 'in no phase'}")


def pod_not_scheduled(rule, cluster_ids):
    queryset = Pod.objects.filter(cluster_id__in=cluster_ids, phase="Pending", node_name="")
    return _pod_matches(rule, queryset, lambda ns, name, phase, restarts: f"pod {ns}/{name} is not scheduled to any node")


def pod_restarts(rule, cluster_ids):
    if rule.window_seconds:
        return pod_restarts_within(rule, cluster_ids)
    queryset = Pod.objects.filter(cluster_id__in=cluster_ids, restarts__gte=rule.threshold or 0)
    return _pod_matches(rule, queryset, lambda ns, name, phase, restarts: f"pod {ns}/{name} restarted {restarts} times",
                        value="restarts")


def pod_restarts_within(rule, cluster_ids):
    """Restarts within the rule's window, from the restart history (recorded first, for all the clusters at once)."""
    from monitoring import restarts as history

    now = timezone.now()
    history.record(cluster_ids, now)
    counts = history.within(cluster_ids, rule.window_seconds, rule.threshold or 0, now)
    if not counts:
        return {}
    window = f"{rule.window_seconds // 60} minutes" if rule.window_seconds % 60 == 0 else f"{rule.window_seconds} seconds"
    return _pod_matches(rule, Pod.objects.filter(pk__in=list(counts)),
                        lambda ns, name, phase, n: f"pod {ns}/{name} restarted {n} times in the last {window}",
                        value="counts", counts=counts)


def pod_crash_looping(rule, cluster_ids):
    queryset = Pod.objects.filter(cluster_id__in=cluster_ids, waiting_reason="CrashLoopBackOff")
    return _pod_matches(rule, queryset, lambda ns, name, phase, restarts:
                        f"pod {ns}/{name} is crash-looping (a container waits in CrashLoopBackOff; {restarts} restarts)",
                        value="restarts")


def control_plane_unhealthy(rule, cluster_ids):
    """The failing checks of each cluster's API server (``monitoring.controlplane``), one alert per check."""
    from monitoring.models import ClusterMonitorState

    wanted = (rule.selector or {}).get("check")
    found = []
    for cluster_id, name, failing in ClusterMonitorState.objects.filter(
            cluster_id__in=cluster_ids, cluster__state__in=[ClusterState.ACTIVE, ClusterState.UPDATING]).exclude(
            control_plane_failing=[]).values_list("cluster_id", "cluster__name", "control_plane_failing"):
        checks = {}
        for item in failing or []:
            check = item.get("check", "")
            if not wanted or check == wanted:
                checks.setdefault(check, []).append(f"/{item.get('endpoint')}: {item.get('reason')}")
        for check, reasons in checks.items():
            found.append((cluster_id, f"control-plane/{check}", Match(
                f"cluster {name}: control-plane check {check} is failing ({'; '.join(reasons)})"[:1000],
                labels={"cluster": name, "check": check})))
    return _by_cluster(found)


def workload_unavailable(rule, cluster_ids):
    percent = 100 if rule.threshold is None else rule.threshold
    queryset = _namespaced(rule, Workload.objects.filter(cluster_id__in=cluster_ids, kind__in=["deployment", "statefulset", "daemonset", "service"],
                                                          desired_replicas__gt=0))
    queryset = queryset.filter(available_replicas__lt=F("desired_replicas") * percent / 100.0)
    rows = queryset.values_list("cluster_id", "name", "namespace__name", "namespace__project_id", "kind", "desired_replicas",
                                "available_replicas")
    return _by_cluster(
        (cluster_id, f"{kind}/{namespace}/{name}", Match(
            f"{kind} {namespace}/{name} has {available} of {desired} replicas available", value=available,
            labels={"namespace": namespace, kind: name}, project_id=rule.project_id or project_id, namespaced=True,
        ))
        for cluster_id, name, namespace, project_id, kind, desired, available in rows
    )


def warning_event(rule, cluster_ids):
    selector = rule.selector or {}
    queryset = ClusterEvent.objects.filter(cluster_id__in=cluster_ids, type="Warning", last_seen__gte=timezone.now() - EVENT_WINDOW)
    if rule.project_id:
        queryset = queryset.filter(namespace__project_id=rule.project_id)
    if selector.get("namespace"):
        queryset = queryset.filter(namespace__name=selector["namespace"])
    if selector.get("kind"):
        queryset = queryset.filter(involved_kind=selector["kind"])
    if selector.get("reason"):
        queryset = queryset.filter(reason=selector["reason"])
    rows = queryset.values_list("cluster_id", "namespace__name", "namespace__project_id", "involved_kind", "involved_name", "reason",
                                "message", "count").order_by("last_seen")
    return _by_cluster(
        (cluster_id, f"event/{namespace or '-'}/{kind}/{name}/{reason}", Match(
            f"{kind} {namespace + '/' if namespace else ''}{name}: {reason}: {message}"[:1000], value=count,
            labels={"namespace": namespace or "", "kind": kind, "name": name, "reason": reason},
            project_id=rule.project_id or project_id, namespaced=bool(namespace),
        ))
        for cluster_id, namespace, project_id, kind, name, reason, message, count in rows
    )


def _requested(resource):
    request_field, allocatable_field = (("cpu_request_m", "cpu_allocatable_m") if resource == "cpu"
                                        else ("memory_request_bytes", "memory_allocatable_bytes"))

    def condition(rule, cluster_ids):
        requested = Subquery(
            Pod.objects.filter(node=OuterRef("pk")).exclude(phase__in=["Succeeded", "Failed"]).values("node")
            .annotate(total=Sum(request_field)).values("total")[:1]
        )
        # Only nodes at or above the threshold come back from the database.
        rows = _nodes(rule, Node.objects.filter(cluster_id__in=cluster_ids, **{f"{allocatable_field}__gt": 0})).annotate(
            requested=Coalesce(requested, 0)).filter(requested__gte=F(allocatable_field) * (rule.threshold or 0) / 100.0).values_list(
            "cluster_id", "name", "requested", allocatable_field)
        return _by_cluster(
            (cluster_id, f"node/{name}", Match(f"{resource} requested on node {name} is {100.0 * used / allocatable:.0f}% of allocatable",
                                               value=round(100.0 * used / allocatable, 1), labels={"node": name}))
            for cluster_id, name, used, allocatable in rows
        )

    return condition


def _usage(resource):
    """Node usage from the newest collected point (metrics.k8s.io), against allocatable."""

    def condition(rule, cluster_ids):
        from monitoring.usage import latest_node_usage

        latest = latest_node_usage(cluster_ids)
        field = "cpu_allocatable_m" if resource == "cpu" else "memory_allocatable_bytes"
        rows = _nodes(rule, Node.objects.filter(cluster_id__in=cluster_ids, **{f"{field}__gt": 0})).values_list("cluster_id", "name", field)
        found = []
        for cluster_id, name, allocatable in rows:
            used = latest.get((cluster_id, name))
            if used is None:
                continue
            percent = 100.0 * (used[0] if resource == "cpu" else used[1]) / allocatable
            if percent >= (rule.threshold or 0):
                found.append((cluster_id, f"node/{name}", Match(f"{resource} in use on node {name} is {percent:.0f}% of allocatable",
                                                                value=round(percent, 1), labels={"node": name})))
        return _by_cluster(found)

    return condition


def project_quota(rule, cluster_ids):
    """Each project's ResourceQuota use (reconciled into ``quota_status``) against its pool."""
    from projects.models import Project
    from projects.quantities import parse_quantity

    projects = Project.objects.filter(cluster_id__in=cluster_ids)
    if rule.project_id:
        projects = projects.filter(pk=rule.project_id)
    wanted = (rule.selector or {}).get("resource")
    found = []
    for cluster_id, pk, name, pool, status in projects.values_list("cluster_id", "pk", "name", "resource_quota", "quota_status"):
        used = (status or {}).get("used") or {}
        for key, limit in (pool or {}).items():
            if (wanted and key != wanted) or key not in used:
                continue
            try:
                percent = 100.0 * float(parse_quantity(used[key])) / float(parse_quantity(limit))
            except (ValueError, TypeError, ZeroDivisionError, ArithmeticError):
                continue
            if percent >= (rule.threshold or 0):
                found.append((cluster_id, f"project/{name}/{key}", Match(
                    f"project {name} uses {used[key]} of its {key} quota {limit} ({percent:.0f}%)", value=round(percent, 1),
                    labels={"project": name, "resource": key}, project_id=pk, namespaced=True)))
    return _by_cluster(found)


def kubernetes_eol(rule, cluster_ids):
    """Clusters whose Kubernetes minor version is past its end of life (``PORTAL_KUBERNETES_EOL``)."""
    import re

    from django.conf import settings

    today = timezone.now().date()
    found = []
    for pk, name, version in Cluster.objects.filter(pk__in=cluster_ids).exclude(kubernetes_version="").values_list(
            "pk", "name", "kubernetes_version"):
        minor = re.match(r"^v?(\d+)\.(\d+)", version)
        if not minor:
            continue
        key = f"{minor.group(1)}.{minor.group(2)}"
        ended = settings.KUBERNETES_EOL.get(key)
        oldest_known = min(settings.KUBERNETES_EOL, key=lambda v: tuple(map(int, v.split("."))))
        if ended is None and tuple(map(int, key.split("."))) < tuple(map(int, oldest_known.split("."))):
            ended = settings.KUBERNETES_EOL[oldest_known]  # older than every listed release: ended before it
        if ended is not None and ended <= today:
            found.append((pk, f"cluster/{name}", Match(f"cluster {name} runs Kubernetes {version}, whose {key} releases ended {ended}",
                                                       labels={"cluster": name, "version": version})))
    return _by_cluster(found)


CONDITIONS = {
    AlertCondition.PROJECT_QUOTA: project_quota,
    AlertCondition.KUBERNETES_EOL: kubernetes_eol,
    AlertCondition.CPU_USAGE: _usage("cpu"),
    AlertCondition.MEMORY_USAGE: _usage("memory"),
    AlertCondition.CLUSTER_UNAVAILABLE: cluster_unavailable,
    AlertCondition.NODE_NOT_READY: node_not_ready,
    AlertCondition.POD_NOT_RUNNING: pod_not_running,
    AlertCondition.POD_NOT_SCHEDULED: pod_not_scheduled,
    AlertCondition.POD_RESTARTS: pod_restarts,
    AlertCondition.POD_CRASH_LOOPING: pod_crash_looping,
    AlertCondition.CONTROL_PLANE: control_plane_unhealthy,
    AlertCondition.WORKLOAD_UNAVAILABLE: workload_unavailable,
    AlertCondition.WARNING_EVENT: warning_event,
    AlertCondition.CPU_REQUESTED: _requested("cpu"),
    AlertCondition.MEMORY_REQUESTED: _requested("memory"),
}


def matches_for(rule, cluster):
    return CONDITIONS[rule.condition](rule, [cluster.pk]).get(cluster.pk, {})


# --- state changes ------------------------------------------------------------------------------


def alert_payload(alert):
    return {
        "id": alert.pk, "rule": alert.rule_id, "cluster": alert.cluster_id, "project": alert.project_id, "target": alert.target,
        "state": alert.state, "severity": alert.severity, "message": alert.message, "value": alert.value,
        "started": alert.started.isoformat() if alert.started else None,
        "resolved": alert.resolved.isoformat() if alert.resolved else None,
        "acknowledged": alert.acknowledged.isoformat() if alert.acknowledged else None,
        "silenced_until": alert.silenced_until.isoformat() if alert.silenced_until else None,
    }


def announce(alert, event="alert.updated"):
    """Push the alert's change to whoever may see it (after commit)."""
    emit(event, alert_payload(alert), alert, group_name("cluster", alert.cluster_id), FEED_ALERTS)


@dataclass
class Plan:
    """What bringing one rule's alerts on one cluster in line with its matches takes."""

    create: list = field(default_factory=list)
    update: list = field(default_factory=list)  # changed alerts (message, value, labels, state, fired, resolved)
    drop: list = field(default_factory=list)  # pending alerts that never fired
    notify: bool = False
    next_due: object = None


def plan(rule, cluster_id, open_alerts, matches, now):
    """Compare the open alerts ({target: Alert}) with the matches; nothing is written here."""
    hold = timedelta(seconds=rule.for_seconds)
    out = Plan()
    for target, match in matches.items():
        alert = open_alerts.get(target)
        if alert is None:
            firing = hold.total_seconds() == 0
            out.create.append(Alert(rule_id=rule.pk, cluster_id=cluster_id, target=target[:300], project_id=match.project_id,
                                    severity=rule.severity, cluster_wide_id=None if match.namespaced else cluster_id,
                                    state=AlertState.FIRING if firing else AlertState.PENDING, message=match.message, value=match.value,
                                    labels=match.labels, started=now, fired=now if firing else None))
            out.notify |= firing
            if not firing:
                out.next_due = _earliest(out.next_due, now + hold)
            continue
        changed = (alert.message, alert.value, alert.labels) != (match.message, match.value, match.labels)
        alert.message, alert.value, alert.labels = match.message, match.value, match.labels
        if alert.state == AlertState.PENDING:
            if now - alert.started >= hold:
                alert.state, alert.fired, changed, out.notify = AlertState.FIRING, now, True, True
            else:
                out.next_due = _earliest(out.next_due, alert.started + hold)
        if changed:
            alert.modified = now
            out.update.append(alert)
    for target, alert in open_alerts.items():
        if target in matches:
            continue
        if alert.state == AlertState.PENDING:
            out.drop.append(alert)  # it never fired: nobody was told, nothing to resolve
            continue
        alert.state, alert.resolved, alert.modified = AlertState.RESOLVED, now, now
        out.update.append(alert)
        out.notify = True
    return out


UPDATED_FIELDS = ["message", "value", "labels", "state", "fired", "resolved", "modified"]


def evaluate_rule(rule, cluster, now=None, matches=None):
    """Bring the rule's alerts on ``cluster`` in line with what matches now (``matches``, when the
    caller already asked).  Returns the earliest time a pending alert will be due to fire (or None)."""
    now = now or timezone.now()
    matches = matches_for(rule, cluster) if matches is None else matches
    with transaction.atomic(), events.batched():
        open_alerts = {a.target: a for a in Alert.objects.select_for_update().filter(rule=rule, cluster=cluster, state__in=OPEN_STATES)}
        todo = plan(rule, cluster.pk, open_alerts, matches, now)
        for alert in todo.create:
            try:
                with transaction.atomic():
                    alert.save()
            except IntegrityError:  # another pass opened it meanwhile
                continue
            announce(alert)
        for alert in todo.update:
            alert.save(update_fields=UPDATED_FIELDS)
            announce(alert)
        _drop(todo.drop)
        if todo.notify:
            delivery.group_changed(rule, cluster.pk, now)
    return todo.next_due


def _drop(alerts):
    for alert in alerts:
        announce_dropped(alert)
    if alerts:
        Alert.objects.filter(pk__in=[a.pk for a in alerts]).delete()


def apply_all(work, now):
    """Apply many rules' changes at once (the periodic pass): ``work`` is [(rule, cluster id,
    matches)].  One transaction: the open alerts locked and read in one query, new ones inserted
    in one statement, changed ones updated in one, live events sent in one trip, groups made due
    together.  If another evaluation opened one of the same alerts meanwhile, each rule is
    evaluated on its own instead (under its own lock).  Returns how many rules changed."""
    if not work:
        return 0
    try:
        with transaction.atomic(), events.batched():
            rule_ids, cluster_ids = {rule.pk for rule, _, _ in work}, {cluster_id for _, cluster_id, _ in work}
            wanted = {(rule.pk, cluster_id) for rule, cluster_id, _ in work}
            open_alerts = defaultdict(dict)
            for alert in Alert.objects.select_for_update().filter(rule_id__in=rule_ids, cluster_id__in=cluster_ids, state__in=OPEN_STATES):
                if (alert.rule_id, alert.cluster_id) in wanted:
                    open_alerts[alert.rule_id, alert.cluster_id][alert.target] = alert
            create, update, drop, due = [], [], [], []
            for rule, cluster_id, matches in work:
                todo = plan(rule, cluster_id, open_alerts.get((rule.pk, cluster_id), {}), matches, now)
                create += todo.create
                update += todo.update
                drop += todo.drop
                if todo.notify:
                    due.append((rule, cluster_id))
            with transaction.atomic():
                Alert.objects.bulk_create(create, batch_size=2000)
            Alert.objects.bulk_update(update, UPDATED_FIELDS, batch_size=2000)
            for alert in create + update:
                announce(alert)
            _drop(drop)
            delivery.groups_changed(due, now)
    except IntegrityError:
        log.info("periodic pass: an alert was opened meanwhile; evaluating rule by rule")
        clusters = Cluster.objects.in_bulk({cluster_id for _, cluster_id, _ in work})
        for rule, cluster_id, matches in work:
            if cluster_id in clusters:
                evaluate_rule(rule, clusters[cluster_id], now, matches)
    return len(work)


def announce_dropped(alert):
    emit("alert.deleted", {"id": alert.pk, "cluster": alert.cluster_id}, alert, group_name("cluster", alert.cluster_id), FEED_ALERTS)


def rules_for(cluster_id, conditions=None):
    rules = AlertRule.objects.filter(enabled=True).filter(Q(cluster_id=cluster_id) | Q(cluster__isnull=True))
    if conditions is not None:
        rules = rules.filter(condition__in=list(conditions))
    return rules.select_related("project")


def evaluate_cluster(cluster_id, conditions=None, now=None):
    """Evaluate the cluster's enabled rules (only those of ``conditions`` when given).  Returns the
    earliest time a pending alert is due, or None."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None:
        return None
    next_due = None
    for rule in rules_for(cluster_id, conditions):
        try:
            due = evaluate_rule(rule, cluster, now)
        except Exception:
            log.exception("alert rule %s on cluster %s: evaluation failed", rule.pk, cluster_id)
            continue
        next_due = _earliest(next_due, due)
    return next_due


def _same(matches, open_alerts, hold, now):
    """Would evaluating change nothing?  Same targets, same messages and values, no pending alert due."""
    if matches.keys() != open_alerts.keys():
        return False
    for target, (state, started, message, value, labels) in open_alerts.items():
        match = matches[target]
        if (message, value, labels) != (match.message, match.value, match.labels):
            return False
        if state == AlertState.PENDING and now - started >= hold:
            return False
    return True


@dataclass
class RuleRow:
    """What the periodic pass reads of each rule: enough to ask its condition and compare."""

    pk: int
    condition: str
    threshold: float | None
    window_seconds: int | None
    selector: dict
    project_id: int | None
    cluster_id: int | None
    for_seconds: int


def evaluate_all(now=None):
    """The periodic pass over every monitored cluster's rules.  Rules that share a condition,
    threshold, selector and project are asked in one query for all their clusters; the open
    alerts are read in one query; only the rules whose alerts would change are then read whole
    and applied, together (``apply_all``).  Returns (rules looked at, rules that changed)."""
    now = now or timezone.now()
    monitored = list(Cluster.objects.filter(state__in=[ClusterState.ACTIVE, ClusterState.UPDATING, ClusterState.UNAVAILABLE])
                     .values_list("pk", flat=True))
    rules = [RuleRow(*row) for row in AlertRule.objects.filter(enabled=True).filter(Q(cluster_id__in=monitored) | Q(cluster__isnull=True))
             .values_list("pk", "condition", "threshold", "window_seconds", "selector", "project_id", "cluster_id", "for_seconds")]
    pairs = [(rule, cluster_id) for rule in rules for cluster_id in ([rule.cluster_id] if rule.cluster_id else monitored)]
    groups = defaultdict(list)
    for rule, cluster_id in pairs:
        key = (rule.condition, rule.threshold, rule.window_seconds, json.dumps(rule.selector or {}, sort_keys=True), rule.project_id)
        groups[key].append((rule, cluster_id))
    found = {}
    for members in groups.values():
        answer = CONDITIONS[members[0][0].condition](members[0][0], sorted({cluster_id for _, cluster_id in members}))
        for rule, cluster_id in members:
            found[rule.pk, cluster_id] = answer.get(cluster_id, {})
    open_alerts = defaultdict(dict)
    for rule_id, cluster_id, target, state, started, message, value, labels in Alert.objects.filter(
        state__in=OPEN_STATES, rule__enabled=True
    ).values_list("rule_id", "cluster_id", "target", "state", "started", "message", "value", "labels"):
        open_alerts[rule_id, cluster_id][target] = (state, started, message, value, labels)
    changed = [(rule, cluster_id) for rule, cluster_id in pairs
               if not _same(found[rule.pk, cluster_id], open_alerts.get((rule.pk, cluster_id), {}), timedelta(seconds=rule.for_seconds), now)]
    whole = AlertRule.objects.in_bulk({rule.pk for rule, _ in changed})
    work = [(whole[rule.pk], cluster_id, found[rule.pk, cluster_id]) for rule, cluster_id in changed if rule.pk in whole]
    try:
        applied = apply_all(work, now)
    except Exception:
        log.exception("periodic alert evaluation: applying %d rules' changes failed", len(work))
        applied = 0
    return len(pairs), applied
