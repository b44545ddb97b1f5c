"""Reading settings from environment variables, with errors that name the variable."""

import ipaddress
import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name, default, environ=None):
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        return default
    value = value.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name, default, environ=None):
    value = (os.environ if environ is None else environ).get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def env_list(name, default="", environ=None):
    return [item.strip() for item in (os.environ if environ is None else environ).get(name, default).split(",") if item.strip()]


def env_networks(name, default, environ=None):
    """A comma-separated list of CIDRs (``10.0.0.0/8,fd00::/8``), as normalised strings."""
    value = (os.environ if environ is None else environ).get(name)
    networks = []
    for item in (default if value is None else value).split(","):
        if not item.strip():
            continue
        try:
            networks.append(str(ipaddress.ip_network(item.strip())))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"{name}: {item.strip()!r} is not a network in CIDR notation such as 10.0.0.0/8 or fd00::/8 ({exc})"
            ) from None
    return networks
