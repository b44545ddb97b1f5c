"""``GET /api/v1/clusters/<id>/kubeconfig/`` and ``GET /api/v1/kubeconfig/``: a kubeconfig for
kubectl through Corral's proxy, as JSON (which kubectl reads as it reads YAML)."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from clusters import kubeconfig
from clusters.models import Cluster
from portal.audit import record

DAYS = OpenApiParameter(
    "expires_in_days", OpenApiTypes.INT, required=False,
    description="Lifetime of the kubeconfig's token in days (default PORTAL_KUBECONFIG_TOKEN_DAYS, at most PORTAL_API_TOKEN_MAX_DAYS)",
)
KUBECONFIG_SCHEMA = {
    "type": "object",
    "description": "A kubeconfig (kind: Config) with one context per cluster and a new token of kind `kubeconfig`",
    "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "current-context": {"type": "string"},
        "clusters": {"type": "array", "items": {"type": "object"}},
        "contexts": {"type": "array", "items": {"type": "object"}},
        "users": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["apiVersion", "kind", "clusters", "contexts", "users"],
}


def _days(request):
    raw = request.query_params.get("expires_in_days")
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= settings.API_TOKEN_MAX_DAYS:
        raise exceptions.ValidationError({"expires_in_days": f"must be a whole number of days from 1 to {settings.API_TOKEN_MAX_DAYS}"})
    return int(raw)


def kubeconfig_response(request, clusters, filename):
    days = _days(request)
    read_only = bool(getattr(request.auth, "read_only", False))  # a read-only caller gets a read-only token
    config, token = kubeconfig.issue(request.user, clusters, kubeconfig.server_base(request), days=days, read_only=read_only)
    record("create", token, after={"key_id": token.key_id, "kind": token.kind, "expires": token.expires.isoformat(), "read_only": token.read_only})
    response = Response(config)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


class ClusterKubeconfigMixin:
    @extend_schema(parameters=[DAYS], responses={200: KUBECONFIG_SCHEMA})
    @action(detail=True, methods=["get"])
    def kubeconfig(self, request, pk=None):
        """A kubeconfig for this cluster through Corral, with a new token of its own."""
        cluster = self.get_object()
        if cluster.is_swarm:
            raise exceptions.ValidationError({"cluster": [cluster.kubernetes_only("a kubeconfig")]})
        return kubeconfig_response(request, [cluster], f"{cluster.slug}.kubeconfig")


class KubeconfigView(APIView):
    @extend_schema(parameters=[DAYS], responses={200: KUBECONFIG_SCHEMA}, operation_id="kubeconfig_retrieve")
    def get(self, request):
        """A kubeconfig with a context for every cluster you may see, with a new token of its own."""
        clusters = Cluster.objects.restrict(request.user, "view").kubernetes().order_by("name", "pk")
        return kubeconfig_response(request, clusters, "corral.kubeconfig")
