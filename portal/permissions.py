"""The one permission engine: ``Model.objects.restrict(user, action)``.

Every API viewset, admin page, portal page, websocket event and count asks this module what a
user may see or do, so each rule lives in one place.  The engine is generic, as NetBox keeps
``utilities/permissions``: it imports no domain model.  Each app says, in its ``AppConfig.ready()``:

- which *scopes* it owns (``register_scope``): a kind of object roles are bound on (a cluster, a
  project), where the bindings live, and the scope's parent (a project's cluster);
- how each of its models is scoped (``register``): one ``Grant`` per path from a row to a scope,
  naming the roles that allow each action there; an optional ``extra`` rule (the creator of an
  operation sees it) and its twin for live events, ``extra_audience``;
- which *global permissions* exist (``register_global_permission``: "create clusters"...).

A global administrator may do everything.  A model nobody registered is for administrators only.
Objects a user may not see are answered exactly like objects that do not exist.

Live events are decided by the same grants, turned into *audience tokens* (see ``audience``), so
the websocket needs no query per event and per listener.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import models
from django.db.models import Q

VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"
ACTIONS = (VIEW, ADD, CHANGE, DELETE)

ADMINISTRATOR = "administrator"


# --- registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Something roles are bound on.  ``bindings()`` returns a queryset of role bindings with
    ``user``, ``group`` and ``role`` fields and an id column ``id_field`` naming the scope object;
    ``parents`` maps a parent scope to the column of the bindings queryset that names it
    (``{"cluster": "project__cluster_id"}``)."""

    name: str
    bindings: object
    id_field: str
    parents: dict = field(default_factory=dict)
    # obj -> {parent scope: id}, for a scope object that is not saved in a row yet (can_add).
    parent_ids: object = None


@dataclass(frozen=True)
class Grant:
    """A path from a model's rows to a scope (``lookup``, a field path giving the scope's id, or
    ``"pk"``), and the roles held on that scope that allow each action.  ``via`` reaches up from a
    child scope's bindings: a project role shows the project's cluster (``scope="project",
    via="cluster"``)."""

    scope: str
    lookup: str
    roles: dict
    via: str | None = None

    def roles_for(self, action):
        return frozenset(self.roles.get(action, ()))


@dataclass(frozen=True)
class Rule:
    grants: tuple
    extra: object = None  # (user, action) -> Q or None
    add_permission: str | None = None  # a global permission that allows adding rows anywhere
    extra_audience: object = None  # obj -> audience tokens of whom ``extra`` lets view it


_scopes: dict[str, Scope] = {}
_rules: dict[type, Rule] = {}
_global_permissions: dict[str, str] = {}


def register_scope(name, bindings, id_field, parents=None, parent_ids=None):
    _scopes[name] = Scope(name, bindings, id_field, dict(parents or {}), parent_ids)


def register(model, *grants, extra=None, extra_audience=None, add_permission=None):
    for grant in grants:
        if grant.scope not in _scopes:
            raise LookupError(f"{model.__name__}: scope {grant.scope!r} is not registered (register_scope first)")
    _rules[model] = Rule(tuple(grants), extra, add_permission, extra_audience)


def extend(model, *grants):
    """Add grants to a model another app registered (projects reach into cluster inventory)."""
    rule = rule_for(model)
    if rule is None:
        raise LookupError(f"{model.__name__} is not registered")
    for grant in grants:
        if grant.scope not in _scopes:
            raise LookupError(f"{model.__name__}: scope {grant.scope!r} is not registered (register_scope first)")
    _rules[model] = Rule(rule.grants + tuple(grants), rule.extra, rule.add_permission, rule.extra_audience)


def register_global_permission(name, label):
    _global_permissions[name] = label


def rule_for(model):
    """The registered rule of ``model`` (or of the concrete model a proxy stands for), or None."""
    model = model._meta.concrete_model if hasattr(model, "_meta") else model
    return _rules.get(model)


def scopes():
    return dict(_scopes)


def global_permissions():
    return dict(_global_permissions)


def role_levels(*roles):
    """``{VIEW: roles, ...}`` for a grant where every action needs one of ``roles``."""
    return {action: frozenset(roles) for action in ACTIONS}


# --- who holds what ------------------------------------------------------------------------------


def _subject(user):
    return Q(user=user) | Q(group__in=user.groups.all())


def _bindings(scope_name, user, roles):
    scope = _scopes[scope_name]
    return scope.bindings().filter(_subject(user), role__in=roles)


def scope_ids(user, scope_name, roles, via=None):
    """Subquery of the ids of ``scope_name`` objects (or of their ``via`` parents) where ``user``
    holds one of ``roles``."""
    scope = _scopes[scope_name]
    column = scope.parents[via] if via else scope.id_field
    return _bindings(scope_name, user, roles).values(column)


def held_roles(user, scope_name, scope_id):
    """The roles ``user`` holds (directly or through a group) on one scope object."""
    if not _is_live(user):
        return set()
    scope = _scopes[scope_name]
    return set(_bindings(scope_name, user, _all_roles(scope_name)).filter(**{scope.id_field: scope_id}).values_list("role", flat=True))


def _all_roles(scope_name):
    roles = set()
    for rule in _rules.values():
        for grant in rule.grants:
            if grant.scope == scope_name:
                for action_roles in grant.roles.values():
                    roles |= action_roles
    return roles


def _is_live(user):
    return user is not None and user.is_authenticated and user.is_active


def is_global_admin(user):
    if not _is_live(user):
        return False
    if user.is_superuser:
        return True
    return ADMINISTRATOR in _global_roles(user)


def _global_roles(user):
    cached = getattr(user, "_corral_global_roles", None)
    if cached is None:
        from portal.models import GlobalRoleBinding

        cached = set(GlobalRoleBinding.objects.filter(_subject(user)).values_list("role", flat=True))
        user._corral_global_roles = cached
    return cached


def has_global_permission(user, name):
    """May ``user`` do what the global permission ``name`` allows?  Administrators may."""
    if name not in _global_permissions:
        raise LookupError(f"unknown global permission {name!r}")
    return is_global_admin(user) or (_is_live(user) and name in _global_roles(user))


# --- live events: who hears of an object ----------------------------------------------------------
#
# An event names the *audience tokens* of everyone who may view its object; a listener holds the
# tokens of the roles it has; the event reaches the listener when they share one, which is when
# ``can(user, VIEW, obj)`` holds.  A token is one of:
#   "{scope}-{id}.{role}"           the role held on that scope object     "cluster-7.cluster-owner"
#   "{parent}-{id}.{scope}.{role}"  the role held on a child of that parent (a ``via`` grant)
#                                                                           "cluster-7.project.read-only"
#   "admin"                          a global administrator
#   "user-{id}"                      the user themselves (``extra_audience``: an operation's creator)
# Tokens use only letters, digits, "-" and ".", so they can be part of channel group names.

ADMIN_TOKEN = "admin"


def user_token(user_id):
    return f"user-{user_id}"


def _value(obj, lookup):
    """The value of a grant's ``lookup`` on an instance, following foreign keys; None when a link
    is empty (an event in no namespace)."""
    *path, last = lookup.split("__")
    for name in path:
        if getattr(obj, obj._meta.get_field(name).attname) is None:
            return None
        obj = getattr(obj, name)
    if last == "pk":
        return obj.pk
    return getattr(obj, obj._meta.get_field(last).attname)  # a foreign key's id, not its row


def audience(obj):
    """The tokens of everyone who may view ``obj`` (a saved instance, or one about to be deleted)."""
    tokens = {ADMIN_TOKEN}
    rule = rule_for(type(obj))
    if rule is None:
        return frozenset(tokens)
    for grant in rule.grants:
        roles = grant.roles_for(VIEW)
        scope_id = _value(obj, grant.lookup) if roles else None
        if scope_id is None:
            continue
        if grant.via:
            tokens |= {f"{grant.via}-{scope_id}.{grant.scope}.{role}" for role in roles}
        else:
            tokens |= {f"{grant.scope}-{scope_id}.{role}" for role in roles}
    if rule.extra_audience is not None:
        tokens |= set(rule.extra_audience(obj))
    return frozenset(tokens)


def aggregate_audience(scope_name, scope_id, *models):
    """The tokens of those who may view every row of each of ``models`` inside one scope object:
    the audience of a figure summed over them (a cluster's pod count is not for a project member,
    who sees only some of its pods)."""
    common = None
    for model in models:
        rule = rule_for(model)
        roles = set()
        for grant in rule.grants if rule else ():
            if grant.scope == scope_name and grant.via is None:
                roles |= grant.roles_for(VIEW)
        common = roles if common is None else common & roles
    return frozenset({ADMIN_TOKEN} | {f"{scope_name}-{scope_id}.{role}" for role in common or ()})


def scopes_of(obj):
    """``{scope: id}`` of the scope objects ``obj`` lies in: a project -> its own id and its
    cluster's, an operation -> its cluster's."""
    ids = {}
    rule = rule_for(type(obj))
    for grant in rule.grants if rule else ():
        value = _value(obj, grant.lookup)
        if value is not None:
            ids.setdefault(grant.via or grant.scope, value)
    return ids


def entitlements(user):
    """``{token: {scope: id}}``: every token ``user`` holds now, with the scope objects it lies
    in (to pick those that matter to one page).  A few queries, whatever the number of roles."""
    if not _is_live(user):
        return {}
    held = {user_token(user.pk): {}}
    if is_global_admin(user):
        held[ADMIN_TOKEN] = {}
    for scope in _scopes.values():
        parents = list(scope.parents.items())
        columns = [column for _, column in parents]
        for role, scope_id, *parent_ids in _bindings(scope.name, user, _all_roles(scope.name)).values_list("role", scope.id_field, *columns):
            within = {scope.name: scope_id}
            for (parent, _), parent_id in zip(parents, parent_ids):
                within[parent] = parent_id
                held[f"{parent}-{parent_id}.{scope.name}.{role}"] = {parent: parent_id}
            held[f"{scope.name}-{scope_id}.{role}"] = within
    return held


def tokens_within(held, within):
    """The tokens of ``held`` (from ``entitlements``) that can name an object lying in ``within``
    (from ``scopes_of``): none of a different cluster or project."""
    return {token for token, where in held.items() if all(within.get(name, value) == value for name, value in where.items())}


# --- decisions -------------------------------------------------------------------------------------


def _within(model, lookup, ids):
    """Rows whose ``lookup`` is one of ``ids``.  A lookup through a foreign key (``namespace__project``)
    is a subquery on the related model, the same rows as the join: a restricted count of 200,000
    pods then joins no table of every namespace."""
    head, _, rest = lookup.partition("__")
    field = model._meta.get_field(head) if rest else None
    if field is not None and field.many_to_one and field.concrete:
        related = field.related_model._base_manager.filter(**{f"{rest}__in": ids}).values(field.target_field.attname)
        return Q(**{f"{field.attname}__in": related})
    return Q(**{f"{lookup}__in": ids})


def restriction(model, user, action):
    """The Q that limits ``model`` rows to those ``user`` may ``action``; None means all rows."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if is_global_admin(user):
        return None
    nothing = Q(pk__in=[])
    if not _is_live(user):
        return nothing
    rule = rule_for(model)
    if rule is None:
        return nothing
    q = nothing
    for grant in rule.grants:
        roles = grant.roles_for(action)
        if roles:
            q |= _within(model, grant.lookup, scope_ids(user, grant.scope, roles, via=grant.via))
    if rule.extra is not None:
        extra = rule.extra(user, action)
        if extra is not None:
            q |= extra
    return q


class RestrictedQuerySet(models.QuerySet):
    def restrict(self, user, action=VIEW):
        q = restriction(self.model, user, action)
        return self if q is None else self.filter(q)


def can(user, action, obj):
    """May ``user`` do ``action`` on the saved object ``obj``?"""
    q = restriction(type(obj), user, action)
    if q is None:
        return True
    return type(obj)._default_manager.filter(q, pk=obj.pk).exists()


def _lineage(scope_name, scope_obj):
    """{scope name: id} for a scope object and its parents: a project -> its id and its cluster's."""
    ids = {scope_name: scope_obj.pk}
    scope = _scopes[scope_name]
    if scope.parent_ids is not None:
        ids.update(scope.parent_ids(scope_obj))
    return ids


def can_add(user, model, **scope_objects):
    """May ``user`` create a ``model`` row inside the given scope objects (``cluster=...``,
    ``project=...``)?  A row given no scope at all needs the model's global permission."""
    if is_global_admin(user):
        return True
    if not _is_live(user):
        return False
    rule = rule_for(model)
    if rule is None:
        return False
    if rule.add_permission and has_global_permission(user, rule.add_permission):
        return True
    ids = {}
    for name, obj in scope_objects.items():
        if obj is not None:
            ids.update(_lineage(name, obj))
    for grant in rule.grants:
        roles = grant.roles_for(ADD)
        if not roles:
            continue
        target = grant.via or grant.scope
        if target not in ids:
            continue
        if scope_ids(user, grant.scope, roles, via=grant.via).filter(
            **{_scopes[grant.scope].parents[grant.via] if grant.via else _scopes[grant.scope].id_field: ids[target]}
        ).exists():
            return True
    return False


def may_name_people(user):
    """May ``user`` grant a role anywhere (and so needs to name other users and groups)?"""
    if is_global_admin(user):
        return True
    if not _is_live(user):
        return False
    for scope in _scopes.values():
        rule = rule_for(scope.bindings().model)
        for grant in rule.grants if rule else ():
            roles = grant.roles_for(ADD)
            if roles and _bindings(grant.scope, user, roles).exists():
                return True
    return False


# --- granting roles (Kubernetes RBAC's escalation rule) --------------------------------------------


def binding_scope(model):
    """(scope name, field naming the scope object) when ``model`` holds a scope's role bindings
    (cluster memberships: ``("cluster", "cluster")``), else None."""
    model = model._meta.concrete_model
    for scope in _scopes.values():
        if scope.bindings().model is model:
            field = next(f.name for f in model._meta.concrete_fields if f.attname == scope.id_field)
            return scope.name, field
    return None


def may_grant(user, role, scope_name=None, scope_obj=None):
    """May ``user`` bind ``role`` on ``scope_obj`` (a ``scope_name`` object; none for a global
    role)?  Only when they may already do there everything the role allows: nobody grants more
    than they hold.  Global roles are granted by administrators only."""
    if is_global_admin(user):
        return True
    if scope_name is None or scope_obj is None or not _is_live(user):
        return False
    lineage = _lineage(scope_name, scope_obj)
    held = {name: held_roles(user, name, pk) if pk is not None else set() for name, pk in lineage.items()}
    for rule in _rules.values():
        for grant in rule.grants:
            if grant.scope != scope_name:
                continue
            for action in ACTIONS:
                if role in grant.roles_for(action) and not _holds(rule, grant, action, held):
                    return False
    return True


def _holds(rule, needed, action, held):
    """Does a role in ``held`` allow ``action`` where the grant ``needed`` does: the same grant,
    or a grant on a parent scope (which reaches every row below it)?"""
    for grant in rule.grants:
        if grant.scope not in held or not held[grant.scope] & grant.roles_for(action):
            continue
        if grant == needed or (grant.scope != needed.scope and grant.via is None):
            return True
    return False
