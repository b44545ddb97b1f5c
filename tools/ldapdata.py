"""The test directory's content: the default spec and the LDAP entries it becomes (no server
code here; tools/ldapdir.py runs slapd with it)."""

from __future__ import annotations

import base64
import hashlib
import os

LOCKED_FOREVER = "000001010000Z"  # ppolicy's pwdAccountLockedTime for "locked by an administrator"


def default_directory() -> dict:
    """The directory the tests expect. Every password is '<uid>-password'.

    alice  developers, corral-admins, corral-users
    bob    developers, corral-users
    carol  ops; ops is a member of platform, platform of corral-users (nested twice)
    dave   developers; disabled (ppolicy-locked) and not in corral-users
    erin   team-000 .. team-499, developers, corral-users (502 groups)
    frank  corral-users, developers, qa, support, oncall (5 groups)
    """
    def person(uid, given, sn, groups, disabled=False):
        return {"uid": uid, "given_name": given, "sn": sn, "mail": f"{uid}@corral.test",
                "password": f"{uid}-password", "groups": groups, "disabled": disabled}

    teams = [f"team-{n:03d}" for n in range(500)]
    return {
        "suffix": "dc=corral,dc=test",
        "admin_password": "admin-password",
        "service_account": {"cn": "corral-portal", "password": "corral-portal-password"},
        # A group every enabled user belongs to, directly or through nested groups.
        "required_group": "corral-users",
        # slapd's own default: a plain search returns at most 500 entries (erin's 502 groups
        # do not fit); the pagedResults control may page through any number, as AD allows.
        "size_limit": 500,
        "require_tls": False,
        "users": [
            person("alice", "Alice", "Archer", ["developers", "corral-admins", "corral-users"]),
            person("bob", "Bob", "Baker", ["developers", "corral-users"]),
            person("carol", "Carol", "Carter", ["ops"]),
            person("dave", "Dave", "Dalton", ["developers"], disabled=True),
            person("erin", "Erin", "Evans", teams + ["developers", "corral-users"]),
            person("frank", "Frank", "Fischer",
                   ["corral-users", "developers", "qa", "support", "oncall"]),
        ],
        "groups": [
            {"cn": "corral-users", "description": "May sign in to Corral",
             "groups": ["platform"]},
            {"cn": "corral-admins", "description": "Corral administrators"},
            {"cn": "platform", "description": "Platform engineering", "groups": ["ops"]},
            {"cn": "ops", "description": "Operations"},
        ],
    }


def ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def encode(attrs: dict[str, list[str]]) -> dict[str, list[bytes]]:
    return {key: [v.encode() for v in values] for key, values in attrs.items()}


def user_entry(user: dict, users_base: str) -> tuple[str, dict[str, list[str]]]:
    given, sn = user.get("given_name") or user["uid"], user.get("sn") or user["uid"]
    attrs = {
        "objectClass": ["top", "person", "organizationalPerson", "inetOrgPerson"],
        "uid": [user["uid"]],
        "cn": [user.get("cn") or f"{given} {sn}"],
        "givenName": [given],
        "sn": [sn],
        "mail": [user.get("mail") or f"{user['uid']}@corral.test"],
        "userPassword": [ssha(user["password"])],
    }
    if user.get("disabled"):
        attrs["pwdAccountLockedTime"] = [LOCKED_FOREVER]
    return f"uid={user['uid']},{users_base}", attrs


def group_entry(cn: str, description: str | None, members: list[str],
                groups_base: str) -> tuple[str, dict[str, list[str]]]:
    attrs = {"objectClass": ["top", "groupOfNames"], "cn": [cn], "member": members}
    if description:
        attrs["description"] = [description]
    return f"cn={cn},{groups_base}", attrs


def directory_entries(spec: dict):
    """Every entry of the spec, parents first, with memberOf filled in as the overlay would."""
    suffix = spec["suffix"]
    people, groups_base = f"ou=people,{suffix}", f"ou=groups,{suffix}"
    top = suffix.split(",")[0].split("=")[1]
    yield suffix, {"objectClass": ["top", "dcObject", "organization"], "dc": [top],
                   "o": ["Corral test directory"]}
    for ou in ("people", "groups", "services", "policies"):
        yield f"ou={ou},{suffix}", {"objectClass": ["top", "organizationalUnit"], "ou": [ou]}
    yield f"cn=nobody,{suffix}", {
        "objectClass": ["top", "organizationalRole"], "cn": ["nobody"],
        "description": ["Placeholder member of otherwise empty groups"]}
    yield f"cn=default,ou=policies,{suffix}", {
        "objectClass": ["top", "device", "pwdPolicy"], "cn": ["default"],
        "pwdAttribute": ["userPassword"], "pwdLockout": ["TRUE"], "pwdMaxFailure": ["0"],
        "pwdAllowUserChange": ["TRUE"]}
    account = spec["service_account"]
    yield f"cn={account['cn']},ou=services,{suffix}", {
        "objectClass": ["top", "applicationProcess", "simpleSecurityObject"],
        "cn": [account["cn"]], "userPassword": [ssha(account["password"])],
        "description": ["Corral portal: searches users and groups"]}

    # group cn -> member DNs, in spec order, then the reverse for memberOf
    described = {g["cn"]: g.get("description") for g in spec.get("groups", [])}
    members: dict[str, list[str]] = {cn: [] for cn in described}
    for group in spec.get("groups", []):
        for child in group.get("groups", []):
            members.setdefault(child, [])
            members[group["cn"]].append(f"cn={child},{groups_base}")
    for user in spec["users"]:
        for cn in user.get("groups", []):
            members.setdefault(cn, []).append(f"uid={user['uid']},{people}")
    member_of: dict[str, list[str]] = {}
    for cn, dns in members.items():
        for dn in dns:
            member_of.setdefault(dn, []).append(f"cn={cn},{groups_base}")

    for user in spec["users"]:
        dn, attrs = user_entry(user, people)
        if dn in member_of:
            attrs["memberOf"] = member_of[dn]
        yield dn, attrs
    for cn, dns in members.items():
        dn, attrs = group_entry(cn, described.get(cn), dns or [f"cn=nobody,{suffix}"],
                                groups_base)
        if dn in member_of:
            attrs["memberOf"] = member_of[dn]
        yield dn, attrs
