"""Accounts: directory (LDAP / Active Directory) sign-in, login throttling, the user admin and
the portal's API token pages."""
