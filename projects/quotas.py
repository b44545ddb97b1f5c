"""The project quota is a pool: the quotas of a project's namespaces (their own, or the project's
namespace default) never add up to more than it.  Every check here runs inside the transaction
that makes the change, after ``lock_projects`` has locked the project rows concerned, so two
requests cannot both take the last of the pool, nor one shrink the pool while another takes from it.

One lock order for every change to a pool or an allocation, so that no two of them deadlock: the
namespace row first when one is changed (a move or a quota change: locking it tells which project
it is in), then the project rows in primary-key order.  A project's namespaces are read, not
locked: any change to them takes the project lock first."""

from decimal import Decimal

from django.core.exceptions import ValidationError

from projects.models import Project
from projects.quantities import parse_quantity, validate_quota

_BINARY = (("Ei", 2 ** 60), ("Pi", 2 ** 50), ("Ti", 2 ** 40), ("Gi", 2 ** 30), ("Mi", 2 ** 20), ("Ki", 2 ** 10))


def lock_projects(*pks):
    """Lock the rows of projects ``pks`` (None is skipped) for a quota change, in primary-key
    order, and return them freshly read as {pk: Project}; a project deleted meanwhile is missing.
    FOR NO KEY UPDATE: quota changes wait for each other, rows that merely point at the project
    (memberships, namespaces elsewhere) do not."""
    wanted = sorted({pk for pk in pks if pk is not None})
    rows = Project.objects.select_for_update(no_key=True).filter(pk__in=wanted).order_by("pk")
    return {project.pk: project for project in rows}


def format_quantity(key, value):
    """A Decimal back to the Kubernetes spelling people expect for ``key`` (500m, 2Gi, 10)."""
    value = Decimal(value)
    if value == value.to_integral_value() and not (key.endswith("memory") or key.endswith("storage")):
        return str(int(value))
    if key.endswith("cpu"):
        return f"{int((value * 1000).to_integral_value())}m"
    if key.endswith("memory") or key.endswith("storage"):
        for suffix, size in _BINARY:
            if value >= size and value % size == 0:
                return f"{int(value / size)}{suffix}"
        return str(int(value))
    return str(value.normalize())


def effective_quota(project, own):
    """The ResourceQuota ``hard`` a namespace of ``project`` gets: its own, else the default."""
    return dict(own or (project.namespace_default_quota if project is not None else {}) or {})


def sum_quotas(quotas):
    totals = {}
    for quota in quotas:
        for key, quantity in quota.items():
            totals[key] = totals.get(key, Decimal(0)) + parse_quantity(quantity)
    return totals


def _require_covering(project, name, quota, field):
    pool = project.resource_quota
    if not quota:
        raise ValidationError({field: [
            f"project {project.name!r} has a quota pool ({', '.join(sorted(pool))}), so namespace {name!r} needs a "
            "quota: give it its own resource_quota or set the project's namespace_default_quota"
        ]})
    missing = sorted(set(pool) - set(quota))
    if missing:
        raise ValidationError({field: [
            f"namespace {name!r} must set {', '.join(missing)}: the project pools "
            f"{'it' if len(missing) == 1 else 'them'}, so every namespace's share must say how much it takes"
        ]})


def _is_swarm(project):
    """A Swarm project's pool bounds its services' reservations (clusters/api/swarm_actions.py),
    not shares of it given to its stacks."""
    return project.cluster_id is not None and project.cluster.kind == "swarm"


def check_namespace(project, name, own_quota, *, exclude_pk=None, field="resource_quota"):
    """Refuse (ValidationError on ``field``) if namespace ``name`` with quota ``own_quota`` (or the
    default) does not fit in what is left of ``project``'s pool."""
    if project is None or not project.resource_quota or _is_swarm(project):
        return
    quota = effective_quota(project, own_quota)
    _require_covering(project, name, quota, field)
    others = project.namespaces.all()
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    taken = sum_quotas(effective_quota(project, ns.resource_quota) for ns in others)
    problems = []
    for key, pooled in sorted(project.resource_quota.items()):
        pool, used, asked = parse_quantity(pooled), taken.get(key, Decimal(0)), parse_quantity(quota[key])
        if used + asked > pool:
            left = max(pool - used, Decimal(0))
            problems.append(
                f"{key}: asks {format_quantity(key, asked)} but only {format_quantity(key, left)} is left "
                f"(pool {format_quantity(key, pool)}, {format_quantity(key, used)} allocated to other namespaces)"
            )
    if problems:
        raise ValidationError({field: [f"namespace {name!r} does not fit in project {project.name!r}'s quota: " + "; ".join(problems)]})


def check_project(project):
    """Refuse a pool or namespace default that the project's namespaces would no longer fit in."""
    try:  # malformed quantities are reported by the fields' own validators
        validate_quota(project.resource_quota)
        validate_quota(project.namespace_default_quota)
    except ValidationError:
        return
    pool = project.resource_quota or {}
    default = project.namespace_default_quota or {}
    if pool and default:
        missing = sorted(set(pool) - set(default))
        if missing:
            raise ValidationError({"namespace_default_quota": [
                f"must also set {', '.join(missing)}: the project pools it, so a namespace's default share must say how much it takes"
            ]})
    if not pool or project.pk is None or _is_swarm(project):
        return
    namespaces = list(project.namespaces.all())
    for ns in namespaces:
        _require_covering(project, ns.name, effective_quota(project, ns.resource_quota),
                          "resource_quota" if ns.resource_quota else "namespace_default_quota")
    taken = sum_quotas(effective_quota(project, ns.resource_quota) for ns in namespaces)
    problems = []
    for key, pooled in sorted(pool.items()):
        if taken.get(key, Decimal(0)) > parse_quantity(pooled):
            problems.append(f"{key}: {format_quantity(key, taken[key])} is allocated to its namespaces, more than {pooled}")
    if problems:
        raise ValidationError({"resource_quota": ["the project's namespaces would not fit in this quota: " + "; ".join(problems)]})


def summary(project, namespaces=None):
    """Pool, allocated to namespaces, and used (from the ResourceQuota status), as quantity strings."""
    namespaces = list(project.namespaces.all()) if namespaces is None else namespaces
    allocated = sum_quotas(effective_quota(project, ns.resource_quota) for ns in namespaces)
    used = (project.quota_status or {}).get("used") or {}
    return {
        "pool": dict(project.resource_quota or {}),
        "allocated": {k: format_quantity(k, v) for k, v in sorted(allocated.items())},
        "used": dict(sorted(used.items())),
        "left": {
            k: format_quantity(k, max(parse_quantity(v) - allocated.get(k, Decimal(0)), Decimal(0)))
            for k, v in sorted((project.resource_quota or {}).items())
        },
    }
