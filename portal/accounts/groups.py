"""Group types that scale to users in hundreds of groups.

django-auth-ldap's group types run one plain search, which a directory cuts off at its size
limit (OpenLDAP's default 500, AD's MaxPageSize 1000): a user in more groups than that cannot
log in at all.  These subclasses page with the Simple Paged Results control (RFC 2696, which
OpenLDAP and AD both support), fetch only the name attribute (not every group's member list),
and search for nested parents in batches.  Active Directory resolves nesting itself with the
LDAP_MATCHING_RULE_IN_CHAIN rule, in one search.
"""

from django_auth_ldap.config import LDAPGroupType, MemberDNGroupType, NestedMemberDNGroupType, PosixGroupType
from ldap.controls import SimplePagedResultsControl
from ldap.filter import escape_filter_chars

PAGE_SIZE = 500
# Member DNs per OR-filter when walking up nested groups: keeps each filter a sane size.
FILTER_BATCH = 100
IN_CHAIN = "1.2.840.113556.1.4.1941"


def paged_search(connection, search, filterstr, name_attr):
    """Every entry under ``search`` matching ``filterstr``, fetched page by page."""
    control = SimplePagedResultsControl(True, size=PAGE_SIZE, cookie="")
    results = []
    while True:
        msgid = connection.search_ext(search.base_dn, search.scope, filterstr, [name_attr], serverctrls=[control])
        _, data, _, controls = connection.result3(msgid)
        results.extend(data)
        cookies = [c.cookie for c in controls if c.controlType == SimplePagedResultsControl.controlType]
        if not cookies or not cookies[0]:
            break
        control.cookie = cookies[0]
    return search._process_results(results)


def _and(search, term):
    return f"(&{search.filterstr}{term})"


class PagedMemberDNGroupType(MemberDNGroupType):
    """Direct membership (``member``/``uniqueMember`` holds the user's DN)."""

    def user_groups(self, ldap_user, group_search):
        term = f"({self.member_attr}={escape_filter_chars(ldap_user.dn)})"
        return paged_search(ldap_user.connection, group_search, _and(group_search, term), self.name_attr)


class PagedNestedMemberDNGroupType(NestedMemberDNGroupType):
    """Direct membership and every group containing those groups, cycles pruned."""

    def find_groups_with_any_member(self, member_dn_set, group_search, connection):
        dns = sorted(member_dn_set)
        found = []
        for start in range(0, len(dns), FILTER_BATCH):
            terms = "".join(f"({self.member_attr}={escape_filter_chars(dn)})" for dn in dns[start:start + FILTER_BATCH])
            found.extend(paged_search(connection, group_search, _and(group_search, f"(|{terms})"), self.name_attr))
        return found


class InChainGroupType(LDAPGroupType):
    """Active Directory: all groups, nested included, in one search with the in-chain rule."""

    def user_groups(self, ldap_user, group_search):
        term = f"(member:{IN_CHAIN}:={escape_filter_chars(ldap_user.dn)})"
        return paged_search(ldap_user.connection, group_search, _and(group_search, term), self.name_attr)


# PORTAL_LDAP_GROUP_TYPE -> (group type, object class filter of the group search)
GROUP_TYPES = {
    "groupOfNames": (lambda name: PagedMemberDNGroupType("member", name), "(objectClass=groupOfNames)"),
    "nestedGroupOfNames": (lambda name: PagedNestedMemberDNGroupType("member", name), "(objectClass=groupOfNames)"),
    "groupOfUniqueNames": (
        lambda name: PagedMemberDNGroupType("uniqueMember", name),
        "(objectClass=groupOfUniqueNames)",
    ),
    "posixGroup": (lambda name: PosixGroupType(name), "(objectClass=posixGroup)"),
    "activeDirectory": (lambda name: PagedMemberDNGroupType("member", name), "(objectClass=group)"),
    "nestedActiveDirectory": (lambda name: InChainGroupType(name), "(objectClass=group)"),
}
