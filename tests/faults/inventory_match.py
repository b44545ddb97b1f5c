"""Is Corral's inventory of a cluster what the cluster's API lists, object by object?"""

import time

from clusters.models import Namespace, Node, Pod, Service, Workload

LISTS = {
    "namespaces": ("/api/v1/namespaces", Namespace, {}),
    "nodes": ("/api/v1/nodes", Node, {}),
    "pods": ("/api/v1/pods", Pod, {}),
    "services": ("/api/v1/services", Service, {}),
    "deployments": ("/apis/apps/v1/deployments", Workload, {"kind": "deployment"}),
    "statefulsets": ("/apis/apps/v1/statefulsets", Workload, {"kind": "statefulset"}),
    "daemonsets": ("/apis/apps/v1/daemonsets", Workload, {"kind": "daemonset"}),
    "jobs": ("/apis/batch/v1/jobs", Workload, {"kind": "job"}),
    "cronjobs": ("/apis/batch/v1/cronjobs", Workload, {"kind": "cronjob"}),
}


def differences(cluster, api):
    """What differs between the cluster's lists and Corral's rows, compared by uid and
    resourceVersion; an empty list when they are equal."""
    found = []
    for resource, (path, model, scope) in LISTS.items():
        listed = {o["metadata"]["uid"]: o["metadata"]["resourceVersion"] for o in api.get(path)["items"]}
        # Namespaces Corral asked for but the cluster has not made have no uid: not a copy of anything.
        stored = dict(model.objects.filter(cluster=cluster, **scope).exclude(uid="").values_list("uid", "resource_version"))
        for uid in listed.keys() - stored.keys():
            found.append(f"{resource} {uid} missing (cluster has version {listed[uid]})")
        for uid in stored.keys() - listed.keys():
            found.append(f"{resource} {uid} stored at version {stored[uid]} but gone from the cluster")
        for uid in listed.keys() & stored.keys():
            if listed[uid] != stored[uid]:
                found.append(f"{resource} {uid} stored at version {stored[uid]}, cluster has {listed[uid]}")
    return found


def assert_matches(cluster, api, timeout=0, before_each=None):
    """Fail unless the inventory equals the cluster's lists; with a ``timeout``, keep comparing
    (calling ``before_each`` first, e.g. a resync) until it does.  Objects other tests change
    meanwhile (the sandbox is shared) are why a comparison may need another look."""
    deadline = time.monotonic() + timeout
    while True:
        if before_each:
            before_each()
        found = differences(cluster, api)
        if not found or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    assert not found, f"{len(found)} differences between Corral and the cluster:\n" + "\n".join(found[:40])
