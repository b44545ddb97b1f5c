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


def json_type_problem(field, value):
    """What is wrong with the JSON type of ``value`` for ``field``, or None.  DRF coerces ("5" and
    5.0 for an integer, 0 for a boolean, 5 for a text, an object for a list); the API takes JSON
    values of the documented type, so what the schema says is what is accepted."""
    if value is None:
        return None  # the field itself says whether null is allowed
    s = serializers
    if isinstance(field, s.ManyRelatedField):
        if not isinstance(value, list):
            return "expected a list"
        return next(filter(None, (json_type_problem(field.child_relation, v) for v in value)), None)
    if isinstance(field, s.ListField):
        if not isinstance(value, list):
            return "expected a list"
        return next(filter(None, (json_type_problem(field.child, v) for v in value)), None)
    if isinstance(field, s.DictField):
        if not isinstance(value, dict):
            return "expected an object"
        return next(filter(None, (json_type_problem(field.child, v) for v in value.values())), None)
    if isinstance(field, s.BooleanField):
        return None if isinstance(value, bool) else "expected true or false"
    if isinstance(field, s.IntegerField | s.PrimaryKeyRelatedField):
        return None if isinstance(value, int) and not isinstance(value, bool) else "expected a whole number"
    if isinstance(field, s.FloatField):
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "expected a number"
    if isinstance(field, s.CharField | s.ChoiceField | s.SlugRelatedField):
        return None if isinstance(value, str) else "expected a string"
    return None


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
        for name in writable & set(data):
            problem = json_type_problem(self.fields[name], data[name])
            if problem:
                errors[name] = [problem]
        if errors:
            # Name every refused field, not only the ones refused for their type.
            typed = {name: value for name, value in data.items() if name not in errors}
            try:
                super().to_internal_value(typed)
            except serializers.ValidationError as exc:
                if isinstance(exc.detail, dict):
                    errors = {**exc.detail, **errors}
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
