from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

MAX_OFFSET = 2**63 - 1


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=``; the limit is capped at PORTAL_API_MAX_PAGE_SIZE.  A limit or offset that
    is not a whole number in range is a 400 naming it, not silently the default."""

    @property
    def max_limit(self):
        return settings.API_MAX_PAGE_SIZE

    def get_limit(self, request):
        value = self._whole_number(request, self.limit_query_param, minimum=1)
        return self.default_limit if value is None else min(value, self.max_limit)

    def get_offset(self, request):
        value = self._whole_number(request, self.offset_query_param, minimum=0)
        return value or 0

    @staticmethod
    def _whole_number(request, name, minimum):
        if name not in request.query_params:
            return None
        raw = request.query_params[name]
        if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= MAX_OFFSET:
            raise ValidationError({name: [f"must be a whole number of at least {minimum}"]})
        return int(raw)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            minimum = 1 if parameter["name"] == self.limit_query_param else 0
            parameter["schema"].update({"minimum": minimum, "maximum": MAX_OFFSET})
            if minimum:
                parameter["description"] += f" At most {self.max_limit} are returned."
        return parameters
