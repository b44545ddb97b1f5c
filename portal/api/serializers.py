"""Serializer bases: unknown fields are errors, and model validation (clean) runs as in forms."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.permissions import VIEW, may_name_people


def visible_queryset(queryset, user):
    """The rows of ``queryset`` that ``user`` may name in a request.  Scoped models go through the
    permission engine; users and groups are named only by those who may grant roles somewhere
    (others may name themselves and their own groups)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    if user is None:
        return queryset.none()
    model = queryset.model
    if model is get_user_model() or model is Group:
        if may_name_people(user):
            return queryset
        if not (user.is_authenticated and user.is_active):
            return queryset.none()
        return queryset.filter(pk=user.pk) if model is not Group else queryset.filter(pk__in=user.groups.all())
    if hasattr(queryset, "restrict"):
        return queryset.restrict(user, VIEW)
    return queryset.none()  # a model the engine knows nothing of is nobody's to reference


def restrict_references(fields, request):
    """Limit every writable reference (``cluster``, ``project``, ``notifiers``, ``user``...) to what
    the caller may see, so an object they may not see is answered exactly like one that does not
    exist ("Invalid pk ... does not exist")."""
    user = getattr(request, "user", None)
    for field in fields.values():
        if field.read_only:
            continue
        related = field.child_relation if isinstance(field, serializers.ManyRelatedField) else field
        if isinstance(related, serializers.RelatedField) and related.queryset is not None:
            related.queryset = visible_queryset(related.queryset, user)
    return fields


class StrictMixin:
    """Reject fields the serializer does not know, or may not write, naming them.  References
    to other objects resolve only to what the caller may see."""

    def get_fields(self):
        return restrict_references(super().get_fields(), self.context.get("request"))

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
        writable = {name for name, field in self.fields.items() if not field.read_only}
        unknown = sorted(set(data) - writable)
        errors = {}
        for name in unknown:
            errors[name] = ["read-only field"] if name in self.fields else ["unknown field"]
        for name in writable:
            # DRF takes any iterable as a list: an object given for a list would count as its keys.
            many = isinstance(self.fields[name], serializers.ManyRelatedField | serializers.ListField)
            if many and isinstance(data.get(name), dict):
                errors[name] = ["expected a list"]
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class StrictSerializer(StrictMixin, serializers.Serializer):
    pass


class ModelSerializer(StrictMixin, serializers.ModelSerializer):
    """Runs the model's ``clean()`` so API and admin apply the same rules."""

    def validate(self, attrs):
        attrs = super().validate(attrs)
        model = self.Meta.model
        instance = self.instance or model()
        for key, value in attrs.items():
            field = model._meta.get_field(key) if key in {f.name for f in model._meta.get_fields()} else None
            if field is not None and not field.many_to_many:
                setattr(instance, key, value)
        try:
            instance.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict if hasattr(exc, "message_dict") else exc.messages) from None
        return attrs


class BriefSerializer(serializers.ModelSerializer):
    """For nesting: id, a display name and a link."""

    display = serializers.SerializerMethodField()

    @extend_schema_field(serializers.CharField())
    def get_display(self, obj):
        return str(obj)
