from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api import portal_serializers as s
from portal.api.viewsets import ModelViewSet, ReadOnlyModelViewSet
from portal.models import ApiToken, AuditEvent, GlobalRole, GlobalRoleBinding, Operation
from portal.permissions import global_permissions, has_global_permission, is_global_admin, may_grant


def effective_roles(user):
    """Every role the user holds, and whether it comes directly or through a group."""
    from clusters.models import ClusterMembership
    from projects.models import ProjectMembership

    groups = list(user.groups.all())
    subject = Q(user=user) | Q(group__in=groups)

    def via(binding):
        return "user" if binding.user_id else f"group:{binding.group.name}"

    global_roles = [
        {"role": b.role, "via": via(b)} for b in GlobalRoleBinding.objects.filter(subject).select_related("group")
    ]
    if user.is_superuser:
        global_roles.insert(0, {"role": GlobalRole.ADMINISTRATOR, "via": "superuser"})
    if not global_roles:
        global_roles = [{"role": GlobalRole.STANDARD_USER, "via": "default"}]
    cluster_roles = [
        {"cluster": b.cluster_id, "cluster_name": b.cluster.name, "role": b.role, "via": via(b)}
        for b in ClusterMembership.objects.filter(subject).select_related("cluster", "group")
    ]
    project_roles = [
        {"project": b.project_id, "project_name": b.project.name, "cluster": b.project.cluster_id, "role": b.role, "via": via(b)}
        for b in ProjectMembership.objects.filter(subject).select_related("project", "group")
    ]
    return groups, {"global": global_roles, "clusters": cluster_roles, "projects": project_roles}


class MeView(APIView):
    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "username": serializers.CharField(),
                "email": serializers.CharField(),
                "source": serializers.CharField(),
                "is_administrator": serializers.BooleanField(),
                "groups": serializers.ListField(child=serializers.CharField()),
                "roles": serializers.DictField(),
                "global_permissions": serializers.ListField(child=serializers.CharField()),
                "kubernetes_user": serializers.CharField(),
                "kubernetes_groups": serializers.ListField(child=serializers.CharField()),
            },
        )
    )
    def get(self, request):
        from projects import identity

        user = request.user
        groups, roles = effective_roles(user)
        return Response(
            {
                "id": user.pk,
                "username": user.get_username(),
                "email": user.email,
                "source": getattr(getattr(user, "profile", None), "source", "local"),
                "is_administrator": is_global_admin(user),
                "global_permissions": sorted(n for n in global_permissions() if has_global_permission(user, n)),
                "groups": [g.name for g in groups],
                "roles": roles,
                # Who the user is to the clusters' RBAC (the subjects Corral's bindings name).
                "kubernetes_user": identity.kubernetes_user(user),
                "kubernetes_groups": [identity.group_name(g.name) for g in sorted(groups, key=lambda g: g.name)]
                + ([identity.administrators_group()] if is_global_admin(user) else []),
            }
        )


class OperationViewSet(ReadOnlyModelViewSet):
    queryset = Operation.objects.select_related("created_by")
    serializer_class = s.OperationSerializer
    filterset_fields = ["kind", "status", "cluster"]
    ordering_fields = ["created", "finished"]
    object_actions = {"cancel": "change"}

    @extend_schema(request=None, responses=s.OperationSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        from portal.operations import cancel

        operation = self.get_object()
        if operation.created_by_id != request.user.pk and not is_global_admin(request.user):
            raise exceptions.PermissionDenied("only who started an operation, or an administrator, may cancel it")
        cancel(operation, by=request.user)
        return Response(self.get_serializer(operation).data)


class AuditEventViewSet(ReadOnlyModelViewSet):
    queryset = AuditEvent.objects.all()
    serializer_class = s.AuditEventSerializer
    filterset_fields = ["action", "object_type", "object_id", "username", "source", "request_id"]
    search_fields = ["object_repr", "username", "message"]
    ordering_fields = ["time"]


class GlobalRoleBindingViewSet(ModelViewSet):
    queryset = GlobalRoleBinding.objects.select_related("user", "group")
    serializer_class = s.GlobalRoleBindingSerializer
    filterset_fields = ["role"]

    def check_grant(self, validated_data, instance=None):
        # Global roles are granted by administrators only (the engine lets nobody else see them
        # either; this holds should a global role ever be registered for others).
        if not may_grant(self.request.user, validated_data.get("role", getattr(instance, "role", None))):
            raise exceptions.PermissionDenied("only administrators grant global roles")


class ApiTokenViewSet(ReadOnlyModelViewSet):
    """Your own API tokens.  ``POST`` makes one and shows it once; ``DELETE`` revokes it."""

    queryset = ApiToken.objects.all()
    serializer_class = s.ApiTokenSerializer
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_queryset(self):
        # Even administrators list only their own tokens here.
        return ApiToken.objects.filter(user=self.request.user)

    @extend_schema(request=s.ApiTokenCreateSerializer, responses=s.ApiTokenSerializer)
    def create(self, request):
        data = s.ApiTokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if getattr(request.auth, "read_only", False):
            raise exceptions.PermissionDenied("a read-only token cannot make tokens")
        token, secret = ApiToken.issue(
            request.user,
            days=data.validated_data.get("expires_in_days"),
            description=data.validated_data["description"],
            read_only=data.validated_data["read_only"],
        )
        from portal.audit import record

        record("create", token, after={"key_id": token.key_id, "expires": token.expires.isoformat(), "read_only": token.read_only})
        body = s.ApiTokenSerializer(token).data
        body["token"] = secret
        return Response(body, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        token = self.get_object()
        if token.revoked is None:
            token.revoked = timezone.now()
            token.save(update_fields=["revoked"])
            from portal.audit import record

            record("update", token, before={"revoked": None}, after={"revoked": token.revoked.isoformat()}, message="revoked")
        return Response(status=status.HTTP_204_NO_CONTENT)


