"""Every registered admin, as a staff user of another tenant sees it (tests/admin_base.py)."""

from tests.admin_base import AdminTenancyTests


class TestEveryRegisteredAdmin(AdminTenancyTests):
    pass
