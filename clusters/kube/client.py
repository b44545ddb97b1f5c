"""The one place that turns stored cluster credentials into a Kubernetes API client.

Credentials are a dict: ``server`` (https URL), ``ca_data`` (PEM), and either ``token`` or
``client_cert`` + ``client_key`` (PEM).  Files for the TLS library are written to a private
temporary directory that lives as long as the client.
"""

import os
import tempfile
import weakref

from django.conf import settings
from kubernetes import client as k8s

from clusters.kube import outbound
from clusters.kube.outbound import ConnectionNotAllowed


class ClusterConnectionError(Exception):
    """A cluster could not be reached or refused us; the message is for people."""


def _write(directory, name, pem):
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)
    return path


def api_client(credentials, timeout=None):
    """A ``kubernetes.client.ApiClient`` for ``credentials``; close it (or use ``with``)."""
    server = credentials.get("server")
    if not server:
        raise ClusterConnectionError("the cluster has no API server address")
    config = k8s.Configuration()
    config.host = server.rstrip("/")
    tmp = tempfile.TemporaryDirectory(prefix="corral-kube-")
    if credentials.get("ca_data"):
        config.ssl_ca_cert = _write(tmp.name, "ca.crt", credentials["ca_data"])
    config.verify_ssl = not credentials.get("insecure_skip_tls_verify", False)
    if credentials.get("token"):
        config.api_key = {"authorization": "Bearer " + credentials["token"]}
    elif credentials.get("client_cert") and credentials.get("client_key"):
        config.cert_file = _write(tmp.name, "client.crt", credentials["client_cert"])
        config.key_file = _write(tmp.name, "client.key", credentials["client_key"])
    config.retries = False
    # Straight to the API server, never through an HTTP(S)_PROXY from the environment: the outbound
    # policy checks the address actually connected to, which through a proxy would be the proxy's.
    config.proxy = None
    api = k8s.ApiClient(config)
    outbound.guard(api.rest_client.pool_manager)
    api.corral_timeout = timeout or settings.KUBE_REQUEST_TIMEOUT
    weakref.finalize(api, tmp.cleanup)
    return api


def describe_error(exc, server=""):
    """Words a user understands for what went wrong talking to a cluster."""
    import ssl

    import urllib3
    from kubernetes.client.exceptions import ApiException

    where = f" at {server}" if server else ""
    if isinstance(exc, ConnectionNotAllowed):
        return str(exc)
    # The client turns TLS errors into ApiException(status=0) and then fails decoding its empty
    # body (AttributeError); the real cause is the exception underneath.
    if isinstance(exc, AttributeError) and isinstance(exc.__context__, ApiException):
        exc = exc.__context__
    if isinstance(exc, ApiException) and exc.status == 0:
        text = str(exc.reason)
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
            return f"the API server's TLS certificate{where} is not trusted by the given CA"
        return f"cannot connect to the API server{where} ({text.splitlines()[-1] if text else 'no answer'})"
    if isinstance(exc, ApiException):
        if exc.status == 401:
            return f"the API server{where} rejected the credentials (401 Unauthorized)"
        if exc.status == 403:
            return f"the credentials are not allowed to do this (403 Forbidden): {exc.reason}"
        return f"the API server{where} answered {exc.status} {exc.reason}"
    text = str(exc)
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and reason is not None:
        exc, text = reason, str(reason)
    if isinstance(exc, urllib3.exceptions.SSLError) or isinstance(exc, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return f"the API server's TLS certificate{where} is not trusted by the given CA ({text.split(':')[-1].strip(' )')})"
    # NewConnectionError is a subclass of ConnectTimeoutError: test it first.
    if isinstance(exc, (urllib3.exceptions.NewConnectionError, ConnectionError)) or "Connection refused" in text:
        return f"cannot connect to the API server{where} (connection refused or host unreachable)"
    if isinstance(exc, (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError)) or "timed out" in text:
        return f"the API server{where} did not answer in time"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return f"unknown host{where}"
    return f"error talking to the API server{where}: {text}"


def server_version(api):
    """The cluster's Kubernetes version (``v1.36.3``; "" when the server does not serve /version);
    raises ClusterConnectionError (with ``status`` 401/403 when the credentials were refused)."""
    from kubernetes.client.exceptions import ApiException

    try:
        info = k8s.VersionApi(api).get_code(_request_timeout=api.corral_timeout)
    except ApiException as exc:
        if exc.status != 404:
            error = ClusterConnectionError(describe_error(exc, api.configuration.host))
            error.status = exc.status
            raise error from exc
        return ""  # it answered, without /version (CAPI's in-memory API servers): the version is not told
    except Exception as exc:
        error = ClusterConnectionError(describe_error(exc, api.configuration.host))
        error.status = exc.status if isinstance(exc, ApiException) else None
        raise error from exc
    return info.git_version
