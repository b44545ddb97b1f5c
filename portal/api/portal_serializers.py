from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import serializers

from portal.api.serializers import BriefSerializer, ModelSerializer, StrictSerializer, restrict_references
from portal.models import ApiToken, AuditEvent, GlobalRoleBinding, Operation


class BriefUserSerializer(BriefSerializer):
    class Meta:
        model = get_user_model()
        fields = ["id", "username", "display"]


class BriefGroupSerializer(BriefSerializer):
    class Meta:
        model = Group
        fields = ["id", "name", "display"]


class OperationSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Operation
        fields = [
            "id", "kind", "cluster", "target_repr", "status", "progress", "log", "error",
            "created", "started", "finished", "created_by",
        ]
        read_only_fields = fields


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id", "time", "user", "username", "request_id", "source", "action",
            "object_type", "object_id", "object_repr", "before", "after", "message",
        ]
        read_only_fields = fields


class SubjectMixin:
    """Role bindings name a user or a group, by name."""

    def get_fields(self):
        fields = super().get_fields()
        fields["user"] = serializers.SlugRelatedField(
            slug_field="username", queryset=get_user_model().objects.all(), required=False, allow_null=True
        )
        fields["group"] = serializers.SlugRelatedField(
            slug_field="name", queryset=Group.objects.all(), required=False, allow_null=True
        )
        restrict_references({"user": fields["user"], "group": fields["group"]}, self.context.get("request"))
        return fields

    # Scope field of the binding ("cluster", "project"), for the duplicate check.
    scope_field = None

    def get_validators(self):
        # DRF would turn the (scope, user) and (scope, group) unique constraints into "required"
        # errors on the field not given; the duplicate check below says what is really wrong.
        return []

    def validate(self, attrs):
        user = attrs.get("user", getattr(self.instance, "user", None))
        group = attrs.get("group", getattr(self.instance, "group", None))
        if bool(user) == bool(group):
            raise serializers.ValidationError({"user": ["give exactly one of user or group"]})
        model = self.Meta.model
        scope = {self.scope_field: attrs.get(self.scope_field, getattr(self.instance, self.scope_field, None))} if self.scope_field else {}
        subject = {"user": user} if user else {"group": group}
        clash = model.objects.filter(**scope, **subject)
        if self.scope_field is None:
            clash = clash.filter(role=attrs.get("role", getattr(self.instance, "role", None)))
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            who = f"user {user}" if user else f"group {group}"
            raise serializers.ValidationError({"user" if user else "group": [f"{who} already has a role here"]})
        return super().validate(attrs)


class GlobalRoleBindingSerializer(SubjectMixin, ModelSerializer):
    class Meta:
        model = GlobalRoleBinding
        fields = ["id", "role", "user", "group", "created"]
        read_only_fields = ["created"]


class ApiTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "key_id", "kind", "description", "created", "expires", "read_only", "last_used", "revoked"]
        read_only_fields = fields


class ApiTokenCreateSerializer(StrictSerializer):
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    expires_in_days = serializers.IntegerField(required=False, min_value=1)
    read_only = serializers.BooleanField(required=False, default=False)

    def validate_expires_in_days(self, value):
        if value > settings.API_TOKEN_MAX_DAYS:
            raise serializers.ValidationError(f"must be at most {settings.API_TOKEN_MAX_DAYS} days")
        return value
