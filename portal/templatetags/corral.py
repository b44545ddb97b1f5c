import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince, timeuntil

register = template.Library()


@register.filter
def cpu(millicores):
    """Millicores as cores: 1500 -> 1.5."""
    try:
        value = int(millicores or 0) / 1000
    except (TypeError, ValueError):
        return "–"
    return f"{value:g}"


@register.filter
def bytes(value):  # noqa: A001  (the filter's name in templates)
    try:
        size = float(value or 0)
    except (TypeError, ValueError):
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@register.filter
def cluster_ids(clusters):
    return [c.pk for c in clusters]


@register.filter
def get_item(mapping, key):
    """``mapping[key]``, or '' when it has none."""
    return (mapping or {}).get(key, "")


@register.filter
def global_admin(user):
    """Is ``user`` a global administrator (the engine's answer)?"""
    from portal.permissions import is_global_admin

    return is_global_admin(user)


@register.filter
def when(moment, empty="never"):
    """The one date format: relative words, the exact time on hover, the ISO instant for live.js.

    ``<time class="when" datetime="2026-11-23T01:02:03+00:00" title="…">5 minutes ago</time>``;
    live.js renders the same element for live updates and keeps the words current.
    """
    if isinstance(moment, str):  # an ISO instant kept in JSON (an operation's log lines)
        from django.utils.dateparse import parse_datetime

        try:
            parsed = parse_datetime(moment)
        except ValueError:
            parsed = None
        if parsed is None:
            return moment
        moment = parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, datetime.UTC)
    if not moment:
        return empty
    now = timezone.now()
    words = f"{timesince(moment, now, depth=1)} ago" if moment <= now else f"in {timeuntil(moment, now, depth=1)}"
    if (now - moment).total_seconds() < 60 and moment <= now:
        words = "just now"
    exact = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
    return format_html('<time class="when" datetime="{}" title="{}">{}</time>', moment.isoformat(), exact, words)


# The main navigation's sections and the paths that belong to each (a view may name its section
# with the ``nav_active`` context variable instead).
NAV_SECTIONS = {
    "clusters": ("/clusters/", "/fleet/", "/search/", "/pods/", "/workloads/", "/services/", "/nodes/", "/namespaces/", "/operations/", "/kubeconfig/"),
    "projects": ("/projects/",),
    "alerts": ("/alerts/",),
    "api": ("/api/",),
    "tokens": ("/account/",),
    "manage": ("/manage/",),
    "admin": ("/admin/",),
}


def nav_section(context):
    """The main navigation's section of the page being rendered."""
    if context.get("nav_active"):
        return context["nav_active"]
    request = context.get("request")
    path = getattr(request, "path", "") or ""
    if path == "/":
        return "clusters"
    return next((name for name, prefixes in NAV_SECTIONS.items() if path.startswith(prefixes)), "")


@register.simple_tag(takes_context=True)
def nav_link(context, url_name, label, section):
    """A main navigation link, marked as the current section (``aria-current``) when it is."""
    from django.urls import reverse
    from django.utils.safestring import mark_safe

    current = nav_section(context) == section
    return format_html('<a href="{}"{}>{}</a>', reverse(url_name), mark_safe(' class="active" aria-current="page"') if current else "", mark_safe(label))
