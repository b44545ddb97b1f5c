"""Keys a local install keeps under its var directory, and the key earlier versions derived.

Imported by settings: no Django models here.
"""

import base64
import hashlib
import os
import secrets
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def read_or_create(path, make):
    """The key stored in `path`; on first use `make()` makes it and it is written atomically, mode 0600.

    Processes starting together (web, worker, beat, watcher) agree on one key: the file appears
    complete or not at all (written aside, then hard-linked into place), and the first link wins.
    """
    path = Path(path)
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(make() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    finally:
        os.unlink(tmp)
    return _read(path)


def _read(path):
    value = path.read_text().strip()
    if not value:
        raise ImproperlyConfigured(f"{path} is empty; restore it from a backup (credentials encrypted with it are lost without it)")
    return value


def new_secret_key():
    return secrets.token_urlsafe(64)


def new_fernet_key():
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def derived_fernet_key(secret_key):
    """The Fernet key Corral derived from the secret key when PORTAL_ENCRYPTION_KEYS was unset."""
    digest = hashlib.sha256(("corral-credentials:" + secret_key).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()
