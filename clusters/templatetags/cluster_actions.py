"""Template tags for the issue 13 include slots: a node's actions and a Service's endpoints.

``{% node_actions node as actions %}`` -> ``actions.may_change`` and ``actions.drain`` (the
node's latest drain operation the viewer may see); ``{% service_endpoints service as endpoints %}``
-> ``clusters.services.Endpoints`` (rows, error), or None when the viewer may not see the Service.
Both ask the permission engine for the user of the page's request."""

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
