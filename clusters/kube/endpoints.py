"""A Service's endpoints, read on demand from its EndpointSlices (the inventory does not keep
them: they change with every pod).  Callers check that the viewer may see the Service first."""

from urllib.parse import quote

from clusters.kube.workloads import call

SERVICE_LABEL = "kubernetes.io/service-name"


def read(api, namespace, service_name):
    """The Service's endpoints, one per address: address, ready/serving/terminating, the pod
    (targetRef) and node it is on, and the slice's ports."""
    selector = quote(f"{SERVICE_LABEL}={service_name}")
    slices = call(api, "GET", f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector={selector}").get("items") or []
    rows = []
    for item in slices:
        ports = [{"name": p.get("name") or "", "port": p.get("port"), "protocol": p.get("protocol") or "TCP"} for p in item.get("ports") or []]
        for endpoint in item.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            ref = endpoint.get("targetRef") or {}
            for address in endpoint.get("addresses") or []:
                rows.append({
                    "address": address,
                    "address_type": item.get("addressType", ""),
                    # "nil should be interpreted as ready" (discovery.k8s.io/v1 EndpointConditions)
                    "ready": conditions.get("ready") is not False,
                    "serving": conditions.get("serving", conditions.get("ready")) is not False,
                    "terminating": bool(conditions.get("terminating")),
                    "pod": ref.get("name", "") if ref.get("kind") == "Pod" else "",
                    "node": endpoint.get("nodeName") or "",
                    "ports": ports,
                })
    rows.sort(key=lambda r: (r["pod"], r["address"]))
    return rows
