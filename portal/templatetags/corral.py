from django import template

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
