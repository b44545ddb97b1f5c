"""Model fields shared by the apps."""

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.functions import Cast


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


def reencrypt_stored_values():
    """Re-encrypt with the first key every stored value it cannot open yet (after an upgrade or a key
    rotation), so older keys can be retired.  Returns how many values were rewritten."""
    current, every_key = Fernet(settings.ENCRYPTION_KEYS[0]), _fernet()
    rewritten = 0
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if not isinstance(field, EncryptedJSONField):
                continue
            column = field.attname
            stored = model._base_manager.exclude(**{column: ""}).values_list("pk", Cast(column, models.TextField()))
            for pk, token in stored:
                try:
                    current.decrypt(token.encode())
                    continue
                except InvalidToken:
                    pass
                try:
                    fresh = every_key.rotate(token.encode()).decode()
                except InvalidToken:
                    raise ImproperlyConfigured(f"{model._meta.label} {pk}: {column} cannot be decrypted with the configured keys") from None
                # The raw texts, not values to encrypt; and only if nobody changed it meanwhile.
                raw = models.Value(token, output_field=models.TextField())
                model._base_manager.filter(pk=pk, **{column: raw}).update(**{column: models.Value(fresh, output_field=models.TextField())})
                rewritten += 1
    return rewritten
