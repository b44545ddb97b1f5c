"""Applying a batch of one cluster's watch events in one transaction, with set-based SQL.

``apply_changes`` takes a cluster's events in the order its watches delivered them and writes
them the way ``inventory.apply_change`` writes one, with a handful of statements per resource
instead of a dozen per event:

- the events are folded per object (the last state of an object wins; an object added and deleted
  in the same batch is only deleted); a name seen deleted and then made again (a namespace) first
  writes what came before, so the order of the two survives;
- upserts go in one guarded statement per resource (``store.upsert``: never over a newer
  resourceVersion, never a buried uid), their links (namespace, node, workload) read in bulk;
- an object whose stored row already says the same (a node's heartbeat: only its resourceVersion
  moved) gets its resourceVersion refreshed in one UPDATE for all such rows, and no live event;
  nor does it count as changed (the watcher then neither recomputes the cluster's figures nor
  tells alert evaluation);
- deletions go in one DELETE per resource and bury their uids (``store.bury``);
- live events are emitted for what changed, each to the audience the permission engine computes for
  its row (read with its namespace, so that costs no query), and all of them leave together after
  the commit (``portal.events.batched``).

The caller holds the transaction and the cluster's inventory lock.
"""

import logging

from django.db import connection

from clusters.explain import event_payload, workloads_of
from clusters.kube import inventory, store
from clusters.models import ClusterEvent, Namespace, Node, Workload
from portal.events import emit, group_name

log = logging.getLogger(__name__)
COMPARED_OUT = {"resource_version"}  # a difference only here is not a visible change


def _key(resource, obj):
    meta = obj.get("metadata") or {}
    return meta.get("name", "") if resource == "namespaces" else meta.get("uid", "")


def fold(changes):
    """The batch as steps that may each be written set-wise: lists of ``(upserts, deletes)``, each
    a dict ``(resource, key) -> object`` holding an object's last state in that step."""
    steps, upserts, deletes = [], {}, {}
    for resource, kind, obj in changes:
        key = (resource, _key(resource, obj))
        if kind == "DELETED":
            upserts.pop(key, None)
            deletes[key] = obj
        else:
            if key in deletes:  # deleted, then made again under the same key: the deletion first
                steps.append((upserts, deletes))
                upserts, deletes = {}, {}
            upserts.pop(key, None)  # keep the arrival order of the last state
            upserts[key] = obj
    if upserts or deletes:
        steps.append((upserts, deletes))
    return steps


def object_payload(resource, instance):
    data = {"id": instance.pk, "uid": instance.uid, "name": instance.name}
    fields = ("namespace_id", "workload_id", "phase", "ready", "restarts", "node_name", "kind", "desired_replicas", "ready_replicas")
    for field in fields:
        if hasattr(instance, field):
            data[field] = getattr(instance, field)
    if resource == "pods":
        data["workload"] = instance.workload_id
    return data


class Batch:
    def __init__(self, cluster, careful=True):
        self.cluster = cluster
        self.careful = careful
        self.topic = group_name("cluster", cluster.pk)
        self.ns_ids = {}
        self.namespaces = {}  # id -> Namespace (id, name, project) read by _namespaces
        self.warnings = []
        self.events_written = 0
        self.changed = set()  # resources whose rows this batch wrote or deleted (not only versions refreshed)
        self.settled = {}  # node uid -> its row as the database now holds it (written, or already the same)

    def apply(self, changes):
        for upserts, deletes in fold(changes):
            self._upsert_all(upserts)
            self._delete_all(deletes)
        if self.warnings:
            store.record_warnings(self.cluster.pk, self.warnings)
        return self.events_written

    # --- upserts ---

    def _upsert_all(self, upserts):
        by_resource = {}
        for (resource, _), obj in upserts.items():
            by_resource.setdefault(resource, []).append(obj)
        for resource in inventory.SYNC_ORDER:
            if by_resource.get(resource):
                self._upsert(resource, by_resource[resource])

    def _warn(self, resource, obj, why):
        meta = obj.get("metadata") or {}
        log.warning("cluster %s: %s %s/%s not stored: %s", self.cluster.pk, resource, meta.get("namespace", ""), meta.get("name", ""), why)
        self.warnings.append(store.clean({"resource": resource, "namespace": str(meta.get("namespace", "")), "name": str(meta.get("name", "")),
                                          "uid": str(meta.get("uid", "")), "error": why[:500]}))

    def _namespaces(self, names):
        """``{name: id}`` of the cluster's namespaces (None for one not stored); the rows are kept
        in ``self.namespaces`` by id (what a row's audience reads: its namespace's project)."""
        missing = {n for n in names if n and n not in self.ns_ids}
        if missing:
            found = Namespace.objects.filter(cluster=self.cluster, name__in=missing).order_by().only("id", "name", "cluster_id", "project_id")
            self.namespaces.update({namespace.pk: namespace for namespace in found})
            ids = {namespace.name: namespace.pk for namespace in self.namespaces.values()}
            self.ns_ids.update({name: ids.get(name) for name in missing})
        return self.ns_ids

    def _rows(self, resource, objs):
        """Field values with links resolved in bulk; objects that cannot be placed are left out."""
        rows = []
        if resource in ("namespaces", "nodes"):
            fields = inventory.namespace_fields if resource == "namespaces" else inventory.node_fields
            for obj in objs:
                try:
                    rows.append((obj, fields(obj)))
                except Exception as exc:  # noqa: BLE001 - one odd object must not stop the others
                    self._warn(resource, obj, f"cannot be read: {exc!r}")
            return rows
        ns_ids = self._namespaces({inventory._namespace_of(o) for o in objs})
        pods = []
        for obj in objs:
            try:
                ns_id = ns_ids.get(inventory._namespace_of(obj))
                if resource == "events":
                    rows.append((obj, {**inventory.event_fields(obj), "namespace_id": ns_id}))
                elif ns_id is None:
                    continue  # its namespace is not known yet (a resync places it)
                elif resource in inventory.WORKLOAD_KINDS:
                    rows.append((obj, {**inventory.workload_fields(obj, inventory.WORKLOAD_KINDS[resource]), "namespace_id": ns_id}))
                elif resource == "services":
                    rows.append((obj, {**inventory.service_fields(obj), "namespace_id": ns_id}))
                else:
                    row = inventory.pod_fields(obj) | {"namespace_id": ns_id}
                    kind, name = row["owner_kind"], row["owner_name"]
                    if kind == "ReplicaSet" and (deployment := inventory._deployment_of_replicaset(obj, name)):
                        kind, name = "Deployment", deployment
                    pods.append((obj, row, inventory.OWNER_KIND.get(kind, ""), name))
            except Exception as exc:  # noqa: BLE001
                self._warn(resource, obj, f"cannot be read: {exc!r}")
        if pods:
            nodes = {row["node_name"] for _, row, _, _ in pods if row["node_name"]}
            node_ids = dict(Node.objects.filter(cluster=self.cluster, name__in=nodes).order_by().values_list("name", "id")) if nodes else {}
            owners = {name for _, _, kind, name in pods if kind}
            workload_ids = {}
            if owners:
                workload_ids = {(k, ns, n): i for i, k, ns, n in Workload.objects.filter(
                    cluster=self.cluster, name__in=owners, namespace_id__in={row["namespace_id"] for _, row, _, _ in pods},
                ).order_by().values_list("id", "kind", "namespace_id", "name")}
            for obj, row, kind, name in pods:
                row["node_id"] = node_ids.get(row["node_name"])
                row["workload_id"] = workload_ids.get((kind, row["namespace_id"], name))
                rows.append((obj, row))
        return rows

    def _upsert(self, resource, objs):
        model = inventory.MODELS[resource]
        key = "name" if resource == "namespaces" else "uid"
        rows = [(obj, store.clean(row)) for obj, row in self._rows(resource, objs)]
        if not rows:
            return
        names = list(rows[0][1])
        stored = store.stored_values(model, self.cluster, key, [r[key] for _, r in rows], names)
        changed, same = [], {}
        for obj, row in rows:
            old = stored.get(row[key])
            if old is not None and store.rv_older(row.get("resource_version"), old["resource_version"]):
                continue  # older than what is stored (the upsert would refuse it too)
            if old is not None and all(old[n] == row[n] for n in names if n not in COMPARED_OUT):
                if old["resource_version"] != row.get("resource_version"):
                    same[row[key]] = row.get("resource_version", "")
                if resource == "nodes":
                    self.settled[row[key]] = row
                continue
            changed.append((obj, row))
        store.refresh_versions(model, self.cluster, same, key)
        if not changed:
            return
        self.changed.add(resource)
        by_key = {row[key]: obj for obj, row in changed}
        unique = ("cluster", "name") if resource == "namespaces" else ("cluster", "uid")
        written = [] if connection.vendor == "postgresql" else None  # the rows stored, as the upsert returns them
        for row, why in store.upsert(model, self.cluster, [row for _, row in changed], unique, careful=self.careful, written=written):
            self._warn(resource, by_key.get(row[key], {}), why)
        if written is None:
            written = self._read_written(model, resource, key, {row[key]: row.get("resource_version", "") for _, row in changed})
        elif resource not in ("namespaces", "nodes"):
            for instance in written:  # the audience of a namespaced row needs its namespace
                if instance.namespace_id in self.namespaces:
                    instance.namespace = self.namespaces[instance.namespace_id]
        if resource == "nodes":  # (not those the guard refused: a newer version stored, a buried uid)
            stored_now = {instance.uid for instance in written}
            self.settled.update((row[key], row) for _, row in changed if row[key] in stored_now)
        singular = resource[:-1]
        about = workloads_of(written) if resource == "events" else {}
        for instance in written:
            if resource == "namespaces":
                self.ns_ids[instance.name] = instance.pk
                self.namespaces[instance.pk] = instance
            if resource in inventory.WORKLOAD_KINDS and getattr(instance, key) not in stored:
                inventory.adopt_pods(self.cluster, instance)  # its pods may have come first
            if resource == "events":
                self.events_written += 1
                emit("event.updated", event_payload(instance, about[instance.pk]), instance, self.topic)
            else:
                emit(f"{singular}.updated", object_payload(resource, instance), instance, self.topic)

    def _read_written(self, model, resource, key, versions):
        """The rows just stored, read back (where the upsert does not return them): those holding
        the versions written, not those it refused (a newer version stored, a buried uid)."""
        # No ORDER BY (the models' default orderings): building it was an eighth of the watcher's
        # CPU under a burst of changes, and the order does not matter here.
        written = model.objects.filter(cluster=self.cluster, **{f"{key}__in": list(versions)}).order_by()
        if resource not in ("namespaces", "nodes"):
            written = written.select_related("namespace")  # the audience of a namespaced row needs it
        return [instance for instance in written if instance.resource_version == versions.get(getattr(instance, key))]

    # --- deletions ---

    def _delete_all(self, deletes):
        by_resource = {}
        for (resource, key), obj in deletes.items():
            by_resource.setdefault(resource, {})[key] = obj
        for resource in reversed(inventory.SYNC_ORDER):
            if by_resource.get(resource):
                self._delete(resource, by_resource[resource])

    def _delete(self, resource, objs):
        model = inventory.MODELS[resource]
        key = "name" if resource == "namespaces" else "uid"
        rows = model.objects.filter(cluster=self.cluster, **{f"{key}__in": list(objs)}).order_by()
        if resource not in ("namespaces", "nodes"):
            rows = rows.select_related("namespace")
        # Who hears of a deletion is decided by the row as it was (its namespace's project); a row
        # never stored is heard of only by those who see all of the cluster's rows.
        before = {getattr(row, key): row for row in rows}
        self.changed.add(resource)
        if resource == "namespaces":
            store.forget_namespaces(model.objects.filter(cluster=self.cluster, name__in=list(objs))).delete()
            for name in objs:
                self.ns_ids.pop(name, None)
        elif resource == "events":
            ClusterEvent.objects.filter(cluster=self.cluster, uid__in=list(objs)).delete()
        else:
            model.objects.filter(cluster=self.cluster, uid__in=list(objs)).delete()
        uids = [(obj.get("metadata") or {}).get("uid", "") for obj in objs.values()]
        store.bury(self.cluster, uids)
        singular = resource[:-1]
        for k, obj in objs.items():
            meta = obj.get("metadata") or {}
            about = before.get(k) or model(cluster=self.cluster)
            emit(f"{singular}.deleted", {"uid": meta.get("uid", ""), "name": meta.get("name")}, about, self.topic)


def apply_changes(cluster, changes, careful=True, changed=None, settled=None):
    """Write ``changes`` (``(resource, kind, object)`` in watch order); returns how many events
    (Kubernetes events) were written.  Inside the caller's transaction, under its inventory lock.
    Not ``careful``: a row the database refuses raises (the transaction is spoilt) instead of
    being left out with a warning; the caller then writes the batch again carefully.
    ``changed``, when given (a set), receives the resources whose rows were written or deleted:
    not those whose changes only moved a resourceVersion (a node's heartbeat).  ``settled``, when
    given (a dict), receives the nodes' rows the database holds as given once the batch commits
    (written, or already the same), by uid."""
    batch = Batch(cluster, careful)
    written = batch.apply(changes)
    if changed is not None:
        changed |= batch.changed
    if settled is not None:
        settled.update(batch.settled)
    return written
