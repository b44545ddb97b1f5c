"""Validators for names that end up in Kubernetes, with messages that say what is wrong."""

import re

from django.core.exceptions import ValidationError

# Ids are PostgreSQL bigints: a larger number names no object.
MAX_ID = 2**63 - 1

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_dns1123_label(value):
    """A Kubernetes object name such as a namespace: lower case, digits and '-', at most 63."""
    if not value:
        raise ValidationError("must not be empty")
    if len(value) > 63:
        raise ValidationError(f"must be at most 63 characters (it has {len(value)})")
    if not _DNS1123_LABEL.match(value):
        raise ValidationError(
            f"{value!r} is not a valid Kubernetes name: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )


def validate_label_map(value):
    """Kubernetes-style labels: a flat object of string keys to string values."""
    if not isinstance(value, dict):
        raise ValidationError("must be an object of label names to values")
    for key, item in value.items():
        if not isinstance(key, str) or not key or len(key) > 253:
            raise ValidationError(f"label name {key!r} must be a non-empty string of at most 253 characters")
        if not isinstance(item, str) or len(item) > 63:
            raise ValidationError(f"label {key!r} must have a string value of at most 63 characters")
