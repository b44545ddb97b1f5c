from django.conf import settings
from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=``; the limit is capped at PORTAL_API_MAX_PAGE_SIZE."""

    @property
    def max_limit(self):
        return settings.API_MAX_PAGE_SIZE
