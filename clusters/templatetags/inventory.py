"""Template helpers of the inventory pages: tints, links to pages that may not exist yet."""

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

register = template.Library()

PHASE_STATE = {"Running": "active", "Succeeded": "succeeded", "Pending": "pending", "Failed": "error", "Unknown": "unavailable"}


@register.filter
def phase_state(phase):
    """The state tint of a pod phase (the same classes as a cluster's state)."""
    return PHASE_STATE.get(phase, "unknown")


@register.filter
def node_state(node):
    if not node.ready:
        return "error"
    return "pending" if node.unschedulable else "active"


@register.filter
def node_status(node):
    words = "Ready" if node.ready else "NotReady"
    return f"{words}, SchedulingDisabled" if node.unschedulable else words


@register.simple_tag
def object_yaml_link(cluster_id, api_version, kind, namespace, name, text="YAML"):
    """A link to the generic YAML view of any object, or nothing while that view does not exist."""
    try:
        url = reverse("portal-object-yaml", args=[cluster_id])
    except NoReverseMatch:
        return ""
    query = {"apiVersion": api_version, "kind": kind, "name": name}
    if namespace:
        query["namespace"] = namespace
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(query), text)


@register.simple_tag
def row_html(table):
    """The rendered rows of a table (from ``clusters.rows.table``)."""
    from django.utils.safestring import mark_safe

    return mark_safe(table["html"])  # rendered by the row templates, which escape every value
