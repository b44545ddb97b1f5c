"""What the deploy form and API accept for a container beyond its image: environment variables
and CPU/memory requests and limits, with the namespace's project container defaults filled in the
way Kubernetes would apply its LimitRange.  Errors name the field (``resources.requests.cpu``)."""

import re

from rest_framework import serializers

from projects.quantities import parse_quantity

ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # what the API server accepts (IsEnvVarName)
RESOURCES = ("cpu", "memory")
SECTIONS = ("requests", "limits")
MAX_ENV = 100


def validate_env(value):
    """``[{"name": ..., "value": ...}]`` (a ``{name: value}`` object is taken too)."""
    if isinstance(value, dict):
        value = [{"name": k, "value": v} for k, v in value.items()]
    if not isinstance(value, list):
        raise serializers.ValidationError('must be a list like [{"name": "MODE", "value": "prod"}]')
    if len(value) > MAX_ENV:
        raise serializers.ValidationError(f"at most {MAX_ENV} variables")
    seen, out = set(), []
    for i, item in enumerate(value, 1):
        if not isinstance(item, dict) or set(item) - {"name", "value"} or "name" not in item:
            raise serializers.ValidationError(f"variable {i}: give a name and a value")
        name, text = item["name"], item.get("value", "")
        if not isinstance(name, str) or not ENV_NAME.match(name) or len(name) > 253:
            raise serializers.ValidationError(f"variable {i}: {name!r} is not a valid name (letters, digits, '_', '-', '.'; not starting with a digit)")
        if not isinstance(text, (str, int, float)) or isinstance(text, bool):
            raise serializers.ValidationError(f"{name}: the value must be text")
        if name in seen:
            raise serializers.ValidationError(f"{name} is given twice")
        seen.add(name)
        out.append({"name": name, "value": str(text)})
    return out


def validate_resources(value):
    if not isinstance(value, dict):
        raise serializers.ValidationError('must be an object like {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}')
    out = {}
    for section, amounts in value.items():
        if section not in SECTIONS:
            raise serializers.ValidationError(f"{section}: unknown (give requests and/or limits)")
        if not isinstance(amounts, dict):
            raise serializers.ValidationError(f"{section}: must be an object of cpu and/or memory")
        for resource, quantity in amounts.items():
            if resource not in RESOURCES:
                raise serializers.ValidationError(f"{section}.{resource}: unknown resource (cpu or memory)")
            if quantity in ("", None):
                continue
            try:
                amount = parse_quantity(quantity)
            except ValueError as exc:
                raise serializers.ValidationError(f"{section}.{resource}: {exc}") from None
            if amount <= 0:
                raise serializers.ValidationError(f"{section}.{resource}: must be more than 0")
            out.setdefault(section, {})[resource] = str(quantity).strip()
    return out


def project_defaults(project):
    """``{"limits": {"cpu": "500m"}, "requests": {...}}`` from the project's container defaults."""
    out = {}
    for key, quantity in ((project.container_default_limits or {}) if project else {}).items():
        section, _, resource = key.partition(".")
        if section in SECTIONS and resource in RESOURCES:
            out.setdefault(section, {})[resource] = quantity
    return out


def with_defaults(given, project):
    """The container's resources: what was given, the rest from the project's defaults as the
    namespace's LimitRange would apply them (a request left out where a limit was given is the
    limit, as Kubernetes defaults it).  ValidationError naming the field when a request would
    exceed its limit."""
    defaults = project_defaults(project)
    out = {section: dict(given.get(section, {})) for section in SECTIONS}
    for resource in RESOURCES:
        user_limit = given.get("limits", {}).get(resource)
        if user_limit is None and resource in defaults.get("limits", {}):
            out["limits"][resource] = defaults["limits"][resource]
        if resource not in out["requests"] and user_limit is None and resource in defaults.get("requests", {}):
            out["requests"][resource] = defaults["requests"][resource]
        request, limit = out["requests"].get(resource), out["limits"].get(resource)
        if request is not None and limit is not None and parse_quantity(request) > parse_quantity(limit):
            whose = "" if user_limit is not None else f" (the default of project {project.name}; give a higher limit)"
            raise serializers.ValidationError({"resources": [f"requests.{resource}: {request} is more than the limit {limit}{whose}"]})
    return {section: amounts for section, amounts in out.items() if amounts}
