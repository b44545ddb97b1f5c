"""Control-plane health, as the API server itself reports it: ``/livez?verbose`` and
``/readyz?verbose`` list every check ("[+]etcd ok", "[-]etcd failed: reason withheld").  Asked
with each usage collection (every 30 s); the failing checks are kept per cluster
(``ClusterMonitorState``) and the control-plane rule fires on them.  A cluster that does not
answer at all is the cluster-unavailable rule's business, not this one's."""

import logging
import re

from django.utils import timezone
from kubernetes.client.exceptions import ApiException

from clusters.kube.client import api_client
from monitoring.models import ClusterMonitorState

log = logging.getLogger(__name__)

ENDPOINTS = ("livez", "readyz")
CHECK = re.compile(r"^\[([+-])\]([^\s]+)\s*(.*)$")


def parse(text):
    """[(check, reason)] of the failing checks in a verbose health answer."""
    failing = []
    for line in (text or "").splitlines():
        found = CHECK.match(line.strip())
        if found and found.group(1) == "-":
            failing.append((found.group(2)[:200], found.group(3)[:300] or "failed"))
    return failing


def _read(api, endpoint):
    try:
        response = api.call_api(f"/{endpoint}", "GET", query_params=[("verbose", "true")], header_params={"Accept": "text/plain"},
                                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                                _request_timeout=api.corral_timeout)
        return response.data.decode("utf-8", "replace")
    except ApiException as exc:
        if exc.status and exc.status >= 500 and exc.body:  # a failing check answers 500 with the list
            return exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body)
        raise


def probe(cluster):
    """Ask the cluster and store its failing checks; True when they changed.  When it could not be
    asked, what was stored stays (an unreachable cluster is the cluster-unavailable rule's)."""
    now = timezone.now()
    try:
        api = api_client(cluster.credentials)
        try:
            failing = []
            for endpoint in ENDPOINTS:
                failing += [{"check": check, "endpoint": endpoint, "reason": reason} for check, reason in parse(_read(api, endpoint))]
        finally:
            api.close()
    except Exception as exc:  # noqa: BLE001 - any failure to ask is recorded, never raised into the worker
        log.info("cluster %s: control plane not asked: %s", cluster.pk, exc)
        ClusterMonitorState.objects.update_or_create(cluster=cluster, defaults={
            "control_plane_checked": now, "control_plane_error": f"{type(exc).__name__}: {exc}"[:500]})
        return False
    state, _ = ClusterMonitorState.objects.get_or_create(cluster=cluster)
    changed = state.control_plane_failing != failing
    state.control_plane_failing, state.control_plane_checked, state.control_plane_error = failing, now, ""
    state.save(update_fields=["control_plane_failing", "control_plane_checked", "control_plane_error"])
    return changed
