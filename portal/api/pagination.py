from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

MAX_OFFSET = 2**63 - 1


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=``; the limit is capped at PORTAL_API_MAX_PAGE_SIZE.  A limit or offset that
    is not a whole number in range is a 400 naming it, not silently the default.

    ``count`` is exact up to PORTAL_API_COUNT_LIMIT matches (a view's ``count_limit``, 0 for always);
    past it, it is that limit and ``count_exact`` is false (a search matching 50,000 pods is not counted to the last one on every
    page, as GitLab's "1,000+").  ``next`` is right either way: the page is read one row longer to
    know whether more follow."""

    @property
    def max_limit(self):
        return settings.API_MAX_PAGE_SIZE

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.offset = self.get_offset(request)
        page = list(queryset[self.offset:self.offset + self.limit + 1])
        self.more = len(page) > self.limit
        page = page[:self.limit]
        self.count, self.count_exact = self._count(queryset, len(page), getattr(view, "count_limit", settings.API_COUNT_LIMIT))
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        return page

    def _count(self, queryset, shown, cap):
        """(count, exact): from the page alone when it is the last one, else counted up to ``cap``."""
        if shown and not self.more:
            return self.offset + shown, True
        if not cap:
            return self.get_count(queryset), True
        counted = queryset.order_by()[:cap + 1].count()
        if counted <= cap:
            return counted, True
        return max(cap, self.offset + shown + self.more if shown else 0), False  # at least the rows up to here

    def get_next_link(self):
        return super().get_next_link() if self.more else None

    def get_paginated_response(self, data):
        return Response({"count": self.count, "count_exact": self.count_exact, "next": self.get_next_link(),
                         "previous": self.get_previous_link(), "results": data})

    def get_paginated_response_schema(self, schema):
        answer = super().get_paginated_response_schema(schema)
        answer["properties"]["count_exact"] = {
            "type": "boolean", "example": True,
            "description": "false when more matched than PORTAL_API_COUNT_LIMIT: count is then that limit (or the rows up to this page)"}
        answer["required"] = [*answer.get("required", []), "count_exact"]
        return answer

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
