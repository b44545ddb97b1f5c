"""One server-side template per live row.

The inventory tables (pods, workloads, nodes, namespaces, events) are rendered row by row from
``templates/clusters/rows/<kind>.html``, on page load and for live updates alike: when a change
reaches a page, ``rows.js`` asks ``/rows/<kind>/<pk>/`` for that row, rendered for the viewer
(through the permission engine, with their action buttons), so a live row is the row a reload
shows.  A table says what it lists with its filter (``cluster``, ``namespace``, ``q``, ``workload``,
``node``, ``about``); the same filter decides on page load and for a single row, and a row that
no longer belongs to the table is answered with 204 so the page drops it.
"""

from django.db.models import Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string

from clusters.explain import KIND_OF, why_not_ready
from clusters.models import ClusterEvent, Namespace, Node, Pod, Service, Workload

LIST_LIMIT = 200

MODELS = {"pod": Pod, "workload": Workload, "node": Node, "namespace": Namespace, "event": ClusterEvent, "service": Service}
RELATED = {
    "pod": ("cluster", "namespace", "workload", "node"), "workload": ("cluster", "namespace"), "node": ("cluster",),
    "namespace": ("cluster", "project"), "event": ("cluster", "namespace"), "service": ("cluster", "namespace"),
}
FILTER_KEYS = ("cluster", "id", "namespace", "project", "q", "workload", "node", "service", "about")
ABOUT_KINDS = {"pod": Pod, "workload": Workload, "node": Node, "service": Service}


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def clean_filter(params):
    """The filter of a table from a query dict: known keys, short values, no NUL characters."""
    found = {}
    for key in FILTER_KEYS:
        value = (params.get(key) or "").replace("\x00", "").strip()[:300]
        if value:
            found[key] = value
    return found


def about_q(user, about):
    """The events about one object ("pod:12"): its own, and for a workload its ReplicaSets' and pods'
    (as ``explain`` reads them).  None when the object is unknown or hidden from ``user``."""
    kind, _, pk = (about or "").partition(":")
    model = ABOUT_KINDS.get(kind)
    if model is None or _int(pk) is None:
        return None
    obj = model.objects.restrict(user, "view").filter(pk=_int(pk)).first()
    if obj is None:
        return None
    if kind == "node":
        return Q(cluster_id=obj.cluster_id, involved_kind="Node", involved_name=obj.name)
    if kind == "pod":
        return Q(cluster_id=obj.cluster_id, namespace_id=obj.namespace_id, involved_kind="Pod", involved_name=obj.name)
    if kind == "service":
        return Q(cluster_id=obj.cluster_id, namespace_id=obj.namespace_id, involved_kind__in=["Service", "Endpoints"], involved_name=obj.name)
    kinds = [k for k, v in KIND_OF.items() if v == obj.kind]
    q = Q(involved_kind__in=kinds, involved_name=obj.name)
    if obj.kind == "deployment":
        q |= Q(involved_kind="ReplicaSet", involved_name__startswith=f"{obj.name}-")
    q |= Q(involved_kind="Pod", involved_name__in=Pod.objects.filter(workload=obj).values("name"))
    q |= Q(involved_kind="Pod", involved_name__startswith=f"{obj.name}-")
    return Q(cluster_id=obj.cluster_id, namespace_id=obj.namespace_id) & q


def queryset(kind, user, table_filter):
    """The rows of ``kind`` that ``user`` may see and the table's filter selects."""
    model = MODELS[kind]
    qs = model.objects.restrict(user, "view").select_related(*RELATED[kind])
    f = table_filter
    if _int(f.get("cluster")) is not None:
        qs = qs.filter(cluster_id=_int(f["cluster"]))
    elif "cluster" in f:
        return qs.none()
    if "id" in f:
        qs = qs.filter(pk=_int(f["id"]) or 0)
    if f.get("namespace") and kind not in ("node", "namespace"):
        qs = qs.filter(namespace__name=f["namespace"])
    if f.get("namespace") and kind == "namespace":
        qs = qs.filter(name=f["namespace"])
    if "project" in f and kind != "node":
        qs = qs.filter(**{"project_id" if kind == "namespace" else "namespace__project_id": _int(f["project"]) or 0})
    if "workload" in f:
        qs = qs.filter(workload_id=_int(f["workload"])) if kind == "pod" and _int(f["workload"]) else qs.none()
    if "node" in f:
        qs = qs.filter(node_id=_int(f["node"])) if kind == "pod" and _int(f["node"]) else qs.none()
    if "service" in f:
        service = Service.objects.restrict(user, "view").filter(pk=_int(f["service"]) or 0).first() if kind == "pod" else None
        qs = qs.filter(namespace_id=service.namespace_id, labels__contains=service.selector) if service and service.selector else qs.none()
    if "about" in f:
        q = about_q(user, f["about"]) if kind == "event" else None
        qs = qs.filter(q) if q is not None else qs.none()
    q = f.get("q")
    if q:
        if kind in ("pod", "workload"):
            text = Q(name__icontains=q) | Q(images__icontains=q)
            if kind == "pod":
                text |= Q(node_name__icontains=q)
            qs = qs.filter(text)
        elif kind == "event":
            qs = qs.filter(Q(reason__icontains=q) | Q(message__icontains=q) | Q(involved_name__icontains=q))
        else:
            qs = qs.filter(name__icontains=q)
    return qs


def context_for(kind, user, rows):
    """What each row needs besides itself, decided for ``user`` by the permission engine."""
    pks = [r.pk for r in rows]
    ctx = {"kind": kind}
    if kind == "pod":
        ctx["deletable"] = set(Pod.objects.restrict(user, "delete").filter(pk__in=pks).values_list("pk", flat=True))
        node_ids = {r.node_id for r in rows if r.node_id}
        ctx["visible_nodes"] = set(Node.objects.restrict(user, "view").filter(pk__in=node_ids).values_list("pk", flat=True))
        workload_ids = {r.workload_id for r in rows if r.workload_id}
        ctx["visible_workloads"] = set(Workload.objects.restrict(user, "view").filter(pk__in=workload_ids).values_list("pk", flat=True))
    elif kind == "workload":
        ctx["changeable"] = set(Workload.objects.restrict(user, "change").filter(pk__in=pks).values_list("pk", flat=True))
        events = ClusterEvent.objects.restrict(user, "view").filter(cluster_id__in={r.cluster_id for r in rows})
        ctx["why"] = why_not_ready(rows, events)
    elif kind == "namespace":
        from projects.models import Project

        project_ids = {r.project_id for r in rows if r.project_id}
        ctx["visible_projects"] = set(Project.objects.restrict(user, "view").filter(pk__in=project_ids).values_list("pk", flat=True))
    elif kind == "event":
        ctx["links"] = event_links(user, rows)
    return ctx


def event_links(user, events):
    """{event pk: (url name, pk)} for the events whose object has a page ``user`` may open."""
    wanted = {}
    for e in events:
        if e.involved_kind == "Pod" and e.namespace_id:
            wanted.setdefault("pod", {})[(e.cluster_id, e.namespace_id, e.involved_name)] = e
        elif e.involved_kind == "Node":
            wanted.setdefault("node", {})[(e.cluster_id, None, e.involved_name)] = e
        elif e.involved_kind in KIND_OF and e.namespace_id:
            wanted.setdefault("workload", {})[(e.cluster_id, e.namespace_id, e.involved_name)] = e
        elif e.involved_kind == "Service" and e.namespace_id:
            wanted.setdefault("service", {})[(e.cluster_id, e.namespace_id, e.involved_name)] = e
    links = {}
    for kind, keys in wanted.items():
        model = MODELS[kind]
        names = {name for _, _, name in keys}
        clusters = {c for c, _, _ in keys}
        found = model.objects.restrict(user, "view").filter(cluster_id__in=clusters, name__in=names)
        for obj in found:
            key = (obj.cluster_id, getattr(obj, "namespace_id", None), obj.name)
            for e in events:
                if (e.cluster_id, e.namespace_id if kind != "node" else None, e.involved_name) == key and e.pk not in links:
                    if kind != "workload" or KIND_OF.get(e.involved_kind) == obj.kind:
                        links[e.pk] = (f"portal-{kind}", obj.pk)
    return links


def render_rows(kind, user, rows, request=None):
    """The HTML of ``rows`` (a list), one template per row."""
    ctx = context_for(kind, user, rows)
    return "".join(render_to_string(f"clusters/rows/{kind}.html", {"row": r, **ctx}, request=request) for r in rows)


def table(kind, user, table_filter, limit=LIST_LIMIT, request=None):
    """{'rows': html, 'count': n shown, 'filter': querystring} for a table on a page."""
    from django.utils.http import urlencode

    rows = list(queryset(kind, user, table_filter)[:limit])
    return {"html": render_rows(kind, user, rows, request), "count": len(rows), "filter": urlencode(table_filter), "kind": kind,
            "truncated": len(rows) >= limit, "namespace": table_filter.get("namespace", ""), "q": table_filter.get("q", "")}


def row_view(kind):
    from django.contrib.auth.decorators import login_required

    @login_required
    def view(request, pk):
        """One row for the viewer: 404 when they may not see it, 204 when it is not in the table."""
        model = MODELS[kind]
        obj = get_object_or_404(model.objects.restrict(request.user, "view"), pk=pk)
        if not queryset(kind, request.user, clean_filter(request.GET)).filter(pk=obj.pk).exists():
            return HttpResponse(status=204)
        obj = queryset(kind, request.user, {}).get(pk=obj.pk)
        return HttpResponse(render_rows(kind, request.user, [obj], request), content_type="text/html; charset=utf-8")

    view.__name__ = f"{kind}_row"
    return view


def rows_view(request, kind):  # login_required in urls.py
    """Every row of a table (the page catching up after its socket reconnects)."""
    if kind not in MODELS:
        raise Http404("no such table")
    table_filter = clean_filter(request.GET)
    return HttpResponse(table(kind, request.user, table_filter, request=request)["html"], content_type="text/html; charset=utf-8")
