"""Model fields shared by the apps."""

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


def _fernet():
    # The first key encrypts; every key, fallbacks last, decrypts.
    keys = [*settings.ENCRYPTION_KEYS, *settings.ENCRYPTION_FALLBACK_KEYS]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "PORTAL_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64-encoded bytes each)"
        ) from exc


def encrypt_json(value):
    return _fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token):
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "stored credentials cannot be decrypted with the configured keys (PORTAL_ENCRYPTION_KEYS, "
            "PORTAL_SECRET_KEY or the var directory's encryption-key changed?)"
        ) from exc


class EncryptedJSONField(models.TextField):
    """A JSON value stored encrypted at rest (Fernet); never editable in forms."""

    description = "JSON encrypted at rest"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("editable", False)
        kwargs.setdefault("default", dict)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return {}
        return decrypt_json(value)

    def to_python(self, value):
        if isinstance(value, dict) or value is None:
            return value or {}
        return decrypt_json(value)

    def get_prep_value(self, value):
        if value in (None, {}, ""):
            return ""
        return encrypt_json(value)

    def value_to_string(self, obj):
        return "<encrypted>"
