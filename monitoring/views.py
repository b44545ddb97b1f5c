"""The alerts page: what is firing where the reader may look, filtered; acknowledge and silence go
through the API (portal/static/portal/forms.js), live over the websocket's alerts feed."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from clusters.models import Cluster
from monitoring.models import OPEN_STATES, Alert, AlertState, Severity
from portal.permissions import CHANGE, VIEW

LIMIT = 500


@login_required
def alert_list(request):
    user = request.user
    alerts = Alert.objects.restrict(user, VIEW).select_related("rule", "cluster", "acknowledged_by", "silenced_by")
    state = request.GET.get("state", "open")
    if state == "open":
        alerts = alerts.filter(state__in=OPEN_STATES)
    elif state in AlertState.values:
        alerts = alerts.filter(state=state)
    severity = request.GET.get("severity", "")
    if severity in Severity.values:
        alerts = alerts.filter(severity=severity)
    cluster = request.GET.get("cluster", "")
    if cluster.isascii() and cluster.isdigit() and len(cluster) < 12:
        alerts = alerts.filter(cluster_id=int(cluster))
    rows = list(alerts[:LIMIT])
    changeable = set(Alert.objects.restrict(user, CHANGE).filter(pk__in=[a.pk for a in rows]).values_list("pk", flat=True))
    context = {
        "rows": [(a, a.pk in changeable) for a in rows], "state": state, "severity": severity, "cluster": cluster,
        "states": [("open", "Open (pending and firing)"), *AlertState.choices, ("all", "All")], "severities": Severity.choices,
        "clusters": Cluster.objects.restrict(user, VIEW).only("pk", "name"), "limit": LIMIT,
    }
    return render(request, "monitoring/alert_list.html", context)
