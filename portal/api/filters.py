"""Filters shared by every app's filtersets."""

import django_filters
from django import forms
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_field
from rest_framework import filters
from rest_framework.exceptions import ValidationError

from portal.validators import MAX_ID


class IdField(forms.IntegerField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.NumberFilter):
    """``?cluster=<id>``: a whole number in the range of ids, else a 400 naming the parameter."""

    field_class = IdField


class FilterBackend(DjangoFilterBackend):
    """django-filter, strictly: a typed filter given an empty value, or a boolean filter given
    anything but true/false, is a 400 naming it (django-filter would quietly not filter)."""

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is not None:
            errors = {}
            for name, filter_ in filterset.filters.items():
                for value in request.query_params.getlist(name):
                    if isinstance(filter_, django_filters.BooleanFilter) and value not in ("true", "false"):
                        errors[name] = ["must be true or false"]
                    elif value == "" and not isinstance(filter_, django_filters.CharFilter):
                        errors[name] = ["must not be empty"]
            if errors:
                raise ValidationError(errors)
        return super().filter_queryset(request, queryset, view)


class SearchFilter(filters.SearchFilter):
    """DRF's search, with its refusals (a NUL character) named by the parameter like every other."""

    def get_search_terms(self, request):
        try:
            return super().get_search_terms(request)
        except ValidationError as exc:
            raise ValidationError({self.search_param: exc.detail}) from None
