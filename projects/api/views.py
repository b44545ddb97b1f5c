from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from clusters.api.serializers import NamespaceSerializer
from clusters.models import Namespace
from portal import operations
from portal.api.portal_serializers import OperationSerializer
from portal.api.viewsets import ModelViewSet, check_grant
from portal.audit import record
from portal.permissions import CHANGE, VIEW, can, can_add
from projects import filters, quotas
from projects.api import serializers as s
from projects.models import Project, ProjectMembership

# The cluster's own namespaces: never deleted by Corral, whatever is asked.
PROTECTED_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}


def _namespace_data(namespace):
    return NamespaceSerializer(namespace).data


def _readable_project(user, project):
    """A project the user may not see does not exist, as far as they can tell."""
    if project is not None and not can(user, VIEW, project):
        raise exceptions.ValidationError({"project": [f'Invalid pk "{project.pk}" - object does not exist.']})


class ProjectViewSet(ModelViewSet):
    queryset = Project.objects.select_related("cluster", "created_by").prefetch_related("namespaces")
    serializer_class = s.ProjectSerializer
    filterset_class = filters.ProjectFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created"]
    object_actions = {"reconcile": CHANGE}

    def update(self, request, *args, **kwargs):
        # Validation checks the pool against the namespaces (Project.clean): one transaction from
        # the lock (get_object) to the save, so the check sees them as they are.
        with transaction.atomic():
            return super().update(request, *args, **kwargs)

    @extend_schema(
        parameters=[OpenApiParameter("delete_namespaces", bool, description="also delete its namespaces in the cluster")],
        responses={204: None, 202: OperationSerializer},
    )
    def destroy(self, request, *args, **kwargs):
        """Delete a project.  Its namespaces stay (unassigned) unless ``?delete_namespaces=true``:
        then the deletion is an operation (202) that deletes them in the cluster first and the
        project after, so a failure leaves the project and its namespaces as they are, and says why."""
        project = self.get_object()
        wanted = request.query_params.get("delete_namespaces", "false").lower()
        if wanted not in ("true", "false", "1", "0", "yes", "no"):
            raise exceptions.ValidationError({"delete_namespaces": ["must be true or false"]})
        if project.is_system:
            raise exceptions.ValidationError({"project": ["the System project holds the cluster's own namespaces and cannot be deleted"]})
        names = sorted(project.namespaces.values_list("name", flat=True))
        if wanted in ("true", "1", "yes") and names:
            protected = sorted(PROTECTED_NAMESPACES & set(names))
            if protected:
                raise exceptions.ValidationError({"delete_namespaces": [f"Corral never deletes {', '.join(protected)}; move them out first"]})
            from projects.tasks import delete_project

            with transaction.atomic():
                record("action", project, message=f"deleting with namespaces {', '.join(names)}"[:300])
                op = operations.start("delete-project", delete_project, cluster=project.cluster, target=f"project {project.name}",
                                      user=request.user, args=(project.pk, names))
            return Response(OperationSerializer(op).data, status=status.HTTP_202_ACCEPTED)
        with transaction.atomic():
            project.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(methods=["GET"], responses=NamespaceSerializer(many=True))
    @extend_schema(methods=["POST"], request=s.NamespaceCreateSerializer, responses={201: NamespaceSerializer})
    @action(detail=True, methods=["get", "post"], pagination_class=None, filter_backends=[])
    def namespaces(self, request, pk=None):
        """List the project's namespaces, or create one (Corral then creates it in the cluster)."""
        project = self.get_object() if request.method == "GET" else self._project_for_add(Namespace)
        if request.method == "GET":
            return Response([_namespace_data(ns) for ns in project.namespaces.select_related("cluster", "project")])
        data = s.NamespaceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        name, own = data.validated_data["name"], data.validated_data["resource_quota"]
        with transaction.atomic():
            project = quotas.lock_projects(project.pk).get(project.pk)
            if project is None:
                raise exceptions.NotFound()
            if Namespace.objects.filter(cluster_id=project.cluster_id, name=name).exists():
                raise exceptions.ValidationError({"name": [
                    f"namespace {name!r} already exists in this cluster; move it into the project with PATCH /api/v1/namespaces/<id>/"
                ]})
            quotas.check_namespace(project, name, own)
            namespace = Namespace.objects.create(cluster_id=project.cluster_id, name=name, uid="", project=project, resource_quota=own)
            record("create", namespace, after={"name": name, "project": project.pk, "resource_quota": own})
        return Response(_namespace_data(namespace), status=status.HTTP_201_CREATED)

    @extend_schema(methods=["GET"], responses=s.ProjectMembershipSerializer(many=True))
    @extend_schema(methods=["POST"], request=s.ProjectMemberSerializer, responses={201: s.ProjectMembershipSerializer})
    @action(detail=True, methods=["get", "post"], pagination_class=None, filter_backends=[])
    def members(self, request, pk=None):
        """List the project's members, or add a user or group with a role."""
        if request.method == "GET":
            project = self.get_object()
            rows = ProjectMembership.objects.filter(project=project).select_related("project", "user", "group")
            return Response(s.ProjectMembershipSerializer(rows, many=True).data)
        project = self._project_for_add(ProjectMembership)
        data = s.ProjectMemberSerializer(data=request.data, context={"project": project, "request": request})
        data.is_valid(raise_exception=True)
        check_grant(request.user, ProjectMembership, {**data.validated_data, "project": project})
        with transaction.atomic():
            membership = data.save(project=project)
        return Response(s.ProjectMembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={202: None})
    @action(detail=True, methods=["post"])
    def reconcile(self, request, pk=None):
        """Reconcile the project's cluster now (it also happens after every change and every 15 s)."""
        from projects.tasks import request_reconcile

        project = self.get_object()
        request_reconcile(project.cluster_id)
        return Response({"detail": "reconcile queued"}, status=status.HTTP_202_ACCEPTED)

    def _project_for_add(self, model):
        # Visible (else 404) and the user may add this kind of row to it (else 403).
        project = super().get_queryset().filter(pk=self.kwargs["pk"]).first()
        if project is None:
            raise exceptions.NotFound()
        if not can_add(self.request.user, model, project=project):
            raise exceptions.PermissionDenied(f"you may not add a {model._meta.verbose_name} to this project")
        return project

    def get_object(self):
        if self.action in ("namespaces", "members") and self.request.method == "GET":
            project = super().get_queryset().filter(pk=self.kwargs["pk"]).first()
            if project is None:
                raise exceptions.NotFound()
            return project
        project = super().get_object()
        if self.action in ("update", "partial_update"):
            project = quotas.lock_projects(project.pk).get(project.pk)  # fresh, without the prefetched namespaces
            if project is None:
                raise exceptions.NotFound()
        return project


class ProjectMembershipViewSet(ModelViewSet):
    queryset = ProjectMembership.objects.select_related("project", "user", "group")
    serializer_class = s.ProjectMembershipSerializer
    filterset_class = filters.ProjectMembershipFilter


class NamespaceChangeMixin:
    """Adds ``PATCH /namespaces/<id>/`` to the inventory's read-only namespace endpoint: move a
    namespace into or out of a project, or change its own share of the project quota.  Both ends
    of a move need the right to change the project (or to own the cluster)."""

    @extend_schema(request=s.NamespaceChangeSerializer)
    def partial_update(self, request, *args, **kwargs):
        namespace = self.get_object()
        data = s.NamespaceChangeSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        v = data.validated_data
        user = request.user
        _readable_project(user, v.get("project"))
        with transaction.atomic():
            # The lock order of every quota change (projects/quotas.py): the namespace, then its projects.
            locked = Namespace.objects.select_for_update(no_key=True).get(pk=namespace.pk)
            target_pk = (v["project"].pk if v["project"] is not None else None) if "project" in v else locked.project_id
            projects = quotas.lock_projects(locked.project_id, target_pk)
            source, target = projects.get(locked.project_id), projects.get(target_pk)
            if target_pk is not None and target is None:
                raise exceptions.ValidationError({"project": [f'Invalid pk "{target_pk}" - object does not exist.']})
            if target is not None and target.cluster_id != locked.cluster_id:
                raise exceptions.ValidationError({"project": ["the project is in another cluster"]})
            for end in {source, target}:
                allowed = can(user, CHANGE, end) if end is not None else can(user, CHANGE, locked)
                if not allowed:
                    where = f"project {end.name!r}" if end is not None else "namespaces outside projects"
                    raise exceptions.PermissionDenied(f"you may not change {where}")
            own = v.get("resource_quota", locked.resource_quota)
            if target is not None:
                quotas.check_namespace(target, locked.name, own, exclude_pk=locked.pk,
                                       field="resource_quota" if "resource_quota" in v else "project")
            before = {"project": locked.project_id, "resource_quota": locked.resource_quota}
            locked.project = target
            locked.resource_quota = own
            locked._corral_project_before = source.pk if source is not None and source != target else None
            locked.save(update_fields=["project", "resource_quota"])
            after = {"project": locked.project_id, "resource_quota": locked.resource_quota}
            if before != after:
                record("update", locked, before=before, after=after)
        return Response(_namespace_data(Namespace.objects.select_related("cluster", "project").get(pk=locked.pk)))
