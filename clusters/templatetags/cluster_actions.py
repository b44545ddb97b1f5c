"""Template tags for the issue 13 include slots: a node's actions and a Service's endpoints.

``{% node_actions node as actions %}`` -> ``actions.may_change`` and ``actions.drain`` (the
node's latest drain operation the viewer may see); ``{% service_endpoints service as endpoints %}``
-> ``clusters.services.Endpoints`` (rows, error), or None when the viewer may not see the Service.
Both ask the permission engine for the user of the page's request."""

import json

from django import template
from django.urls import NoReverseMatch, reverse

from clusters import services
from portal.models import Operation
from portal.permissions import CHANGE, VIEW, can

register = template.Library()


def _user(context):
    request = context.get("request")
    return getattr(request, "user", None) or context.get("user")


@register.simple_tag(takes_context=True)
def node_actions(context, node):
    from clusters.api.node_actions import drain_target

    user = _user(context)
    drain = (Operation.objects.restrict(user, VIEW).filter(kind="drain", cluster=node.cluster_id, target_repr=drain_target(node))
             .order_by("-created", "-pk").first())
    return {"may_change": can(user, CHANGE, node), "drain": drain}


@register.simple_tag(takes_context=True)
def service_endpoints(context, service):
    try:
        return services.endpoints_for(_user(context), service)
    except services.NotVisible:
        return None


@register.simple_tag
def page_url(name, pk):
    """The portal page ``name`` of object ``pk``, or '' where that page does not exist."""
    if pk is None:
        return ""
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        return ""


EXAMPLES = {"requests": {"cpu": "e.g. 100m", "memory": "e.g. 128Mi"}, "limits": {"cpu": "e.g. 500m", "memory": "e.g. 256Mi"}}


@register.simple_tag
def deploy_placeholders(namespaces):
    """``{namespace id: JSON}`` of the deploy form's placeholders in each namespace: its project's
    container defaults (what a field left empty gets), else an example.  One query."""
    from clusters.container_spec import project_defaults
    from projects.models import Project

    namespaces = list(namespaces)
    projects = Project.objects.in_bulk({ns.project_id for ns in namespaces if ns.project_id})
    out = {}
    for ns in namespaces:
        project = projects.get(ns.project_id)
        defaults = project_defaults(project)
        fields = {}
        for section, examples in EXAMPLES.items():
            for resource, example in examples.items():
                default = defaults.get(section, {}).get(resource)
                fields[f"resources.{section}.{resource}"] = f"{default} (project {project.name} default)" if default else example
        out[ns.pk] = json.dumps(fields)
    return out
