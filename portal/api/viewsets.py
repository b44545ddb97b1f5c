"""Viewset bases.  Querysets are always ``restrict``ed for the action, so a row the user may not
see is a 404, and one they may see but not change is a 403."""

from django.db import transaction
from rest_framework import exceptions, mixins, viewsets

from portal.permissions import ADD, CHANGE, DELETE, VIEW, binding_scope, can, can_add, may_grant
from portal.validators import MAX_ID

ACTION_FOR_METHOD = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": ADD, "PUT": CHANGE, "PATCH": CHANGE, "DELETE": DELETE}


class RestrictedViewSetMixin:
    """Apply ``restrict(user, "view")``; check change/delete on the object, add on the parent."""

    # Extra actions that change things: name -> permission action checked on the object.
    object_actions = {}

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        lookup = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
        if lookup is not None and not (lookup.isascii() and lookup.isdigit() and 0 < int(lookup) <= MAX_ID):
            raise exceptions.NotFound()

    def get_queryset(self):
        return super().get_queryset().restrict(self.request.user, VIEW)

    def check_object_permissions(self, request, obj):
        super().check_object_permissions(request, obj)
        action = self.object_actions.get(self.action) or ACTION_FOR_METHOD.get(request.method, VIEW)
        if action in (CHANGE, DELETE) and not can(request.user, action, obj):
            raise exceptions.PermissionDenied(f"you may not {action} this {obj._meta.verbose_name}")

    def add_scope(self, validated_data):
        """(cluster, project) that a new row belongs to, for the add check."""
        return validated_data.get("cluster"), validated_data.get("project")

    def perform_create(self, serializer):
        cluster, project = self.add_scope(serializer.validated_data)
        if not can_add(self.request.user, self.queryset.model, cluster=cluster, project=project):
            raise exceptions.PermissionDenied(f"you may not add a {self.queryset.model._meta.verbose_name} here")
        self.check_grant(serializer.validated_data)
        with transaction.atomic():
            serializer.save(**self.extra_create_fields())

    def extra_create_fields(self):
        return {}

    def perform_update(self, serializer):
        # Moving a row to another cluster or project needs the right to add it there.
        cluster, project = self.add_scope(serializer.validated_data)
        if (cluster is not None or project is not None) and not can_add(
            self.request.user, self.queryset.model, cluster=cluster, project=project
        ):
            raise exceptions.PermissionDenied(f"you may not move this {self.queryset.model._meta.verbose_name} there")
        self.check_grant(serializer.validated_data, serializer.instance)
        with transaction.atomic():
            serializer.save()

    def check_grant(self, validated_data, instance=None):
        """A role binding grants only a role its author holds where it is bound (Kubernetes RBAC's
        escalation rule).  Any change to a binding (role, place or subject) grants its role anew."""
        check_grant(self.request.user, self.queryset.model, validated_data, instance)

    def perform_destroy(self, instance):
        with transaction.atomic():
            instance.delete()


def check_grant(user, model, validated_data, instance=None):
    bound = binding_scope(model)
    if bound is None:
        return
    scope_name, field = bound
    role = validated_data.get("role", getattr(instance, "role", None))
    target = validated_data.get(field, getattr(instance, field, None))
    if not may_grant(user, role, scope_name, target):
        raise exceptions.PermissionDenied(f"you may not grant the role {role} in {target}: nobody grants a role they do not hold there")


class PermissionFirstCreateMixin:
    def create(self, request, *args, **kwargs):
        # Permission before validation: someone who may see the target cluster or project but
        # not add to it hears "403" whatever else is wrong with the body.  A target they may not
        # see does not resolve (references are restricted), so validation answers as for a
        # missing one.
        serializer = self.get_serializer(data=request.data)
        if isinstance(request.data, dict):
            scope = {}
            for name in ("cluster", "project"):
                field = serializer.fields.get(name)
                if field is not None and not field.read_only and request.data.get(name) is not None:
                    try:
                        scope[name] = field.run_validation(request.data[name])
                    except exceptions.ValidationError:
                        scope = None
                        break
            if scope and not can_add(request.user, self.queryset.model, **scope):
                raise exceptions.PermissionDenied(f"you may not add a {self.queryset.model._meta.verbose_name} here")
        return super().create(request, *args, **kwargs)


class ModelViewSet(PermissionFirstCreateMixin, RestrictedViewSetMixin, viewsets.ModelViewSet):
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]


class ReadOnlyModelViewSet(RestrictedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    pass


class CreateListRetrieveDestroyViewSet(
    PermissionFirstCreateMixin,
    RestrictedViewSetMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    pass
