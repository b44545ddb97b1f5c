"""Corral's Kubernetes API proxy: ``/k8s/clusters/<id>/...`` speaks the Kubernetes API to kubectl.

The caller authenticates with a Corral token; the cluster is reached with Corral's stored
credentials, through the outbound network policy, and the caller is impersonated so the cluster's
own RBAC decides.  HTTP (``http.py``) and websockets (``websocket.py``: exec, attach,
port-forward) are plain ASGI applications on the web server Corral already runs.
"""
