"""Filters shared by every app's filtersets."""

import django_filters
from django import forms

from portal.api.viewsets import MAX_ID


class IdField(forms.IntegerField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class IdFilter(django_filters.NumberFilter):
    """``?cluster=<id>``: a whole number in the range of ids, else a 400 naming the parameter."""

    field_class = IdField
