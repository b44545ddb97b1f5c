"""Make a cluster match Corral: the namespaces of its projects, their ResourceQuotas, LimitRanges
and RoleBindings, and the cluster owners' and members' ClusterRoleBindings.

One pass reads every object Corral manages with a handful of label-selected list calls, compares
it with what the database wants (projects.desired) and writes only the difference: create what is
missing, replace what was edited by hand, delete what Corral no longer wants.  Objects without the
managed-by label are never changed or deleted.  Each project then shows in sync, or the error.
"""

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from kubernetes.client.exceptions import ApiException

from clusters.kube.client import api_client, describe_error
from clusters.kube.inventory import list_raw
from clusters.models import Cluster, ClusterState, Namespace
from portal.events import emit
from portal.locks import OwnedLock
from projects import desired as d
from projects.models import Project, ProjectSyncState
from projects.quantities import parse_quantity
from projects.quotas import format_quantity

log = logging.getLogger(__name__)
DIRTY_SECONDS = 300  # a change asked for a pass: remembered this long for the pass running now
WORKERS = 8
RECONCILABLE = (ClusterState.ACTIVE, ClusterState.UPDATING)


@dataclass
class Result:
    created: list = field(default_factory=list)
    updated: list = field(default_factory=list)
    deleted: list = field(default_factory=list)
    errors: dict = field(default_factory=dict)  # project id (None: the cluster) -> [message]
    namespace_uids: dict = field(default_factory=dict)  # namespaces this pass made
    seconds: float = 0.0

    def error(self, project_id, message):
        self.errors.setdefault(project_id, []).append(message)


class ReconcileBusy(Exception):
    pass


def lock_name(cluster_id):
    return f"projects:reconcile:{cluster_id}"


def dirty_key(cluster_id):
    return f"projects:reconcile-dirty:{cluster_id}"


# --- talking to the API server ----------------------------------------------------------------


def _call(api, method, path, body=None):
    response = api.call_api(
        path, method, header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=body, auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
        _request_timeout=api.corral_timeout,
    )
    return json.loads(response.data) if response.data else {}


def _object_path(kind, namespace, name=None):
    if kind == "namespaces":
        base = "/api/v1/namespaces"
    elif kind in d.NAMESPACED:
        base = d.NAMESPACED[kind][1].format(ns=namespace)
    else:
        base = d.CLUSTER_SCOPED[kind][0]
    return f"{base}/{name}" if name else base


def _create_or_replace(api, kind, namespace, name, body, result):
    """Create; when the name is taken (an object someone stripped of its label), take it back.
    A namespace that exists already is left as it is: it only joins the project."""
    try:
        made = _call(api, "POST", _object_path(kind, namespace), body)
        if kind == "namespaces":
            result.namespace_uids[name] = made["metadata"]["uid"]
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
    current = _call(api, "GET", _object_path(kind, namespace, name))
    if kind == "namespaces":
        result.namespace_uids[name] = current["metadata"]["uid"]
        return "created"
    _replace(api, kind, namespace, name, body, current)
    return "updated"


def _replace(api, kind, namespace, name, body, current):
    meta = dict(body["metadata"], resourceVersion=current["metadata"]["resourceVersion"])
    meta["labels"] = {**(current["metadata"].get("labels") or {}), **body["metadata"]["labels"]}
    _call(api, "PUT", _object_path(kind, namespace, name), {**body, "metadata": meta})


def _delete(api, kind, namespace, name):
    try:
        _call(api, "DELETE", _object_path(kind, namespace, name))
    except ApiException as exc:
        if exc.status != 404:
            raise


# --- comparing ----------------------------------------------------------------------------------


def _quantities(mapping):
    return {k: parse_quantity(v) for k, v in (mapping or {}).items()}


def _essence(kind, body):
    """The part of an object Corral decides, normalised so the server's spelling does not matter."""
    labels = {k: v for k, v in (body["metadata"].get("labels") or {}).items() if k in (d.MANAGED_BY, d.PROJECT_LABEL)}
    if kind == "resourcequotas":
        return labels, _quantities(body.get("spec", {}).get("hard"))
    if kind == "limitranges":
        limits = body.get("spec", {}).get("limits") or []
        return labels, [
            {"type": item.get("type"), **{s: _quantities(item.get(s)) for s in ("default", "defaultRequest") if item.get(s)}}
            for item in limits
        ]
    if kind in ("rolebindings", "clusterrolebindings"):
        subjects = sorted((s.get("kind"), s.get("name"), s.get("namespace", "")) for s in body.get("subjects") or [])
        return labels, body.get("roleRef", {}).get("name"), subjects
    if kind == "clusterroles":
        rules = [{k: sorted(v) for k, v in rule.items() if v} for rule in body.get("rules") or []]
        return labels, sorted(json.dumps(r, sort_keys=True) for r in rules)
    raise ValueError(kind)


def read_state(api):
    """Every object Corral manages in the cluster, and the names and phases of all namespaces."""
    have = {"namespaces": {}, "namespaced": {}, "cluster_scoped": {}}
    for ns in list_raw(api, "/api/v1/namespaces")[0]:
        have["namespaces"][ns["metadata"]["name"]] = ns
    for kind, (path, *_rest) in d.NAMESPACED.items():
        for obj in list_raw(api, path, labelSelector=d.SELECTOR)[0]:
            have["namespaced"][(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
    for kind, (path, *_rest) in d.CLUSTER_SCOPED.items():
        for obj in list_raw(api, path, labelSelector=d.SELECTOR)[0]:
            have["cluster_scoped"][(kind, obj["metadata"]["name"])] = obj
    return have


def plan(want, have):
    """[(action, kind, namespace, name, body, project id)] that turns ``have`` into ``want``."""
    steps = []
    for name, project_id in sorted(want.namespaces.items()):
        if name not in have["namespaces"]:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": d.labels(project_id)}}
            steps.append(("create", "namespaces", None, name, body, project_id))
    for key, (project_id, body) in sorted(want.namespaced.items()):
        kind, namespace, name = key
        current = have["namespaced"].get(key)
        if current is None:
            steps.append(("create", kind, namespace, name, body, project_id))
        elif _essence(kind, current) != _essence(kind, body):
            steps.append(("replace", kind, namespace, name, body, project_id))
    for key, current in sorted(have["namespaced"].items()):
        if key not in want.namespaced and not current["metadata"].get("deletionTimestamp"):
            kind, namespace, name = key
            project = (current["metadata"].get("labels") or {}).get(d.PROJECT_LABEL)
            owner = int(project) if project and project.isdigit() and int(project) in want.projects else None
            steps.append(("delete", kind, namespace, name, None, owner))
    for key, body in sorted(want.cluster_scoped.items()):
        current = have["cluster_scoped"].get(key)
        if current is None:
            steps.append(("create", key[0], None, key[1], body, None))
        elif _essence(key[0], current) != _essence(key[0], body):
            steps.append(("replace", key[0], None, key[1], body, None))
    for key in sorted(have["cluster_scoped"]):
        if key not in want.cluster_scoped:
            steps.append(("delete", key[0], None, key[1], None, None))
    return steps


def _apply_one(api, step, have, result):
    action, kind, namespace, name, body, _ = step
    if action == "delete":
        _delete(api, kind, namespace, name)
        return "deleted"
    if action == "replace":
        current = (have["namespaced"].get((kind, namespace, name)) if namespace else have["cluster_scoped"].get((kind, name)))
        _replace(api, kind, namespace, name, body, current)
        return "updated"
    return _create_or_replace(api, kind, namespace, name, body, result)


def apply(api, steps, have, result):
    """Namespaces first (the rest lives in them), then everything else in parallel."""
    def run(step):
        try:
            return step, _apply_one(api, step, have, result), None
        except Exception as exc:  # one bad object must not stop the others; it is reported
            return step, None, exc

    ns_steps = [s for s in steps if s[1] == "namespaces"]
    missing = set()
    rest_steps = [s for s in steps if s[1] != "namespaces"]
    for batch in (ns_steps, rest_steps):
        if batch is rest_steps:
            batch = [s for s in batch if s[2] not in missing]
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for step, outcome, exc in pool.map(run, batch):
                label = f"{step[1]}/{step[2] + '/' if step[2] else ''}{step[3]}"
                if exc is not None:
                    if step[1] == "namespaces":
                        missing.add(step[3])
                    result.error(step[5], f"could not {step[0]} {label}: {describe_error(exc)}")
                else:
                    getattr(result, outcome).append(label)


# --- one pass -------------------------------------------------------------------------------


def reconcile(cluster_id):
    """Reconcile one cluster now; returns a Result.  Raises ReconcileBusy if another pass runs
    (that pass will run again, as the dirty flag asks)."""
    lock = OwnedLock(lock_name(cluster_id))
    if not lock.acquire():
        cache.set(dirty_key(cluster_id), 1, DIRTY_SECONDS)
        raise ReconcileBusy(f"cluster {cluster_id} is being reconciled")
    try:
        for _ in range(5):
            cache.delete(dirty_key(cluster_id))
            result = _reconcile_once(cluster_id)
            if not cache.get(dirty_key(cluster_id)):
                return result
        return result
    finally:
        lock.release()


def _reconcile_once(cluster_id):
    started = time.monotonic()
    result = Result()
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None:
        return result
    if cluster.state not in RECONCILABLE:
        result.error(None, f"the cluster is {cluster.state}; Corral will reconcile when it is active again")
        _record(cluster, None, result)
        return result
    if not cluster.credentials:
        result.error(None, "Corral has no credentials for this cluster")
        _record(cluster, None, result)
        return result
    if cluster.is_swarm:
        # Nothing to push to a Swarm (no namespaces, quotas or RBAC): Corral enforces its projects itself.
        _record(cluster, None, result)
        return result
    want = d.desired_state(cluster)
    api = api_client(cluster.credentials)
    have = None
    try:
        have = read_state(api)
        steps = plan(want, have)
        apply(api, steps, have, result)
    except Exception as exc:  # the cluster did not answer: every project shows why
        result.error(None, describe_error(exc, cluster.api_endpoint))
    finally:
        api.close()
    result.seconds = time.monotonic() - started
    _record(cluster, want, result, have=have)
    if result.created or result.updated or result.deleted:
        log.info("reconciled cluster %s in %.2fs: %d created, %d updated, %d deleted, %d errors", cluster.name,
                 result.seconds, len(result.created), len(result.updated), len(result.deleted), sum(map(len, result.errors.values())))
    return result


def _quota_status(want, have):
    """Per project: used per key summed over its namespaces, and per namespace hard/used."""
    status = {}
    for (kind, namespace, _name), obj in (have or {}).get("namespaced", {}).items():
        project_id = want.namespaces.get(namespace)
        if kind != "resourcequotas" or project_id is None:
            continue
        entry = status.setdefault(project_id, {"used": {}, "namespaces": {}})
        st = obj.get("status") or {}
        entry["namespaces"][namespace] = {"hard": st.get("hard") or {}, "used": st.get("used") or {}}
    for entry in status.values():
        totals = {}
        for ns in entry["namespaces"].values():
            for key, value in ns["used"].items():
                totals[key] = totals.get(key, 0) + parse_quantity(value)
        entry["used"] = {k: format_quantity(k, v) for k, v in sorted(totals.items())}
    return status


def _record(cluster, want, result, have=None):
    """Write each project's state; created namespaces get their uid."""
    now = timezone.now()
    cluster_errors = result.errors.get(None, [])
    quota = _quota_status(want, have) if want is not None and have is not None else {}
    with transaction.atomic():
        if have is not None:
            # The inventory sync owns namespace rows; only fill in the uid of the ones asked for.
            # Namespaces before projects, projects by pk: the lock order of quota changes (projects/quotas.py).
            uids = {name: ns["metadata"].get("uid", "") for name, ns in have["namespaces"].items()}
            uids.update(result.namespace_uids)
            for ns in Namespace.objects.filter(cluster=cluster, uid="", name__in=list(uids)):
                Namespace.objects.filter(pk=ns.pk, uid="").update(uid=uids[ns.name], phase="Active")
        projects = Project.objects.select_for_update().filter(cluster=cluster).order_by("pk")
        for project in projects:
            errors = cluster_errors + result.errors.get(project.pk, [])
            state = ProjectSyncState.ERROR if errors else ProjectSyncState.IN_SYNC
            fields = {"sync_state": state, "sync_error": "\n".join(errors)[:4000]}
            if not errors:
                fields["last_reconciled"] = now
            if project.pk in quota or (have is not None and project.quota_status):
                fields["quota_status"] = _jsonable(quota.get(project.pk, {}))
            changed = any(getattr(project, k) != v for k, v in fields.items() if k != "last_reconciled")
            Project.objects.filter(pk=project.pk).update(**fields)
            if changed:
                emit("project.updated", {"id": project.pk, "sync_state": state, "sync_error": fields["sync_error"]}, project,
                     f"project-{project.pk}", f"cluster-{cluster.pk}")


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def delete_namespaces(cluster_id, names):
    """Delete namespaces someone explicitly asked Corral to delete (with their project)."""
    cluster = Cluster.objects.get(pk=cluster_id)
    if cluster.is_swarm:
        from clusters.swarm.client import remove_stacks

        remove_stacks(cluster.credentials, names)
        return
    api = api_client(cluster.credentials)
    try:
        for name in names:
            _delete(api, "namespaces", None, name)
    finally:
        api.close()
