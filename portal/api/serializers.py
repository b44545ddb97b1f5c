"""Serializer bases: unknown fields are errors, and model validation (clean) runs as in forms."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class StrictMixin:
    """Reject fields the serializer does not know, or may not write, naming them."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
        writable = {name for name, field in self.fields.items() if not field.read_only}
        unknown = sorted(set(data) - writable)
        if unknown:
            errors = {}
            for name in unknown:
                errors[name] = ["read-only field"] if name in self.fields else ["unknown field"]
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
