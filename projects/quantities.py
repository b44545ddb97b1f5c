"""Kubernetes resource quantities ("500m", "2Gi", "1e3") and the quota keys Corral accepts."""

import re
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError

QUOTA_KEYS = {
    "requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu", "memory",
    "requests.storage", "requests.ephemeral-storage", "limits.ephemeral-storage",
    "pods", "services", "services.loadbalancers", "services.nodeports", "configmaps", "secrets",
    "persistentvolumeclaims", "replicationcontrollers", "resourcequotas",
}
LIMIT_KEYS = {"limits.cpu", "limits.memory", "requests.cpu", "requests.memory"}

_SUFFIXES = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+]?[0-9]+(?:\.[0-9]*)?|[+]?\.[0-9]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$")


def parse_quantity(value):
    """The Decimal value of a Kubernetes quantity string; ValueError naming the problem."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a quantity")
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: 500m, 2, 1Gi, 512Mi)")
    number, exponent, suffix = match.groups()
    try:
        amount = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from None
    if exponent:
        return amount * (Decimal(10) ** int(exponent[1:]))
    return amount * _SUFFIXES[suffix or ""]


def _validate_map(value, allowed, what):
    if not isinstance(value, dict):
        raise ValidationError(f"must be an object of {what} names to quantities")
    for key, quantity in value.items():
        if key not in allowed:
            raise ValidationError(f"unknown {what} {key!r} (allowed: {', '.join(sorted(allowed))})")
        try:
            parse_quantity(quantity)
        except ValueError as exc:
            raise ValidationError(f"{key}: {exc}") from None


def validate_quota(value):
    _validate_map(value, QUOTA_KEYS, "quota")


def validate_limits(value):
    _validate_map(value, LIMIT_KEYS, "limit")
