"""A private OpenLDAP directory for the central-authentication tests.

`ensure_slapd(var)` starts Debian's slapd on a free 127.0.0.1 port with a generated cn=config
(mdb backend, suffix dc=corral,dc=test, memberof + refint + ppolicy overlays, StartTLS with a
generated CA) and a directory loaded in one offline `slapadd` (so 500 groups cost nothing).
The returned `LdapServer` changes the directory mid-test: add/delete/disable users, change
group membership, pause (SIGSTOP) to simulate a hung directory, stop.

Disabled accounts are locked the way OpenLDAP itself does it: the ppolicy overlay's
`pwdAccountLockedTime: 000001010000Z` ("locked by an administrator, forever"). slapd then refuses
the user's bind with invalidCredentials, and the service account can see the lock by reading the
operational attribute `pwdAccountLockedTime`. Disabled users are also kept out of the required
group (`corral-users`), as a directory admin would, so both checks are exercised.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import pwd
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import ldap
import ldap.modlist
from ldif import LDIFWriter

from tools.ldapdata import (
    LOCKED_FOREVER,
    default_directory,
    directory_entries,
    encode,
    group_entry,
    ssha,
    user_entry,
)
from tools.services import (
    START_TIMEOUT,
    ServiceError,
    apt_install,
    chown_tree,
    free_port,
    locked,
    log_tail,
    pid_alive,
    port_accepts,
    read_int,
    require_binary,
    run,
    stop_pid,
    wait_until,
)

# Bump when the generated config or LDIF changes shape, so running instances get rebuilt.
GENERATOR_VERSION = 1
SCHEMAS = ("core", "cosine", "inetorgperson")
MODULES = ("back_mdb", "memberof", "refint", "ppolicy")
MODULE_DIR = Path("/usr/lib/ldap")
SCHEMA_DIR = Path("/etc/ldap/schema")

_children: dict[int, subprocess.Popen] = {}  # slapd processes we started, reaped on stop


# --- the running server --------------------------------------------------------------------

@dataclass
class LdapServer:
    home: Path
    port: int
    spec: dict = field(repr=False)
    ca_cert_file: str = ""

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def base_dn(self) -> str:
        return self.spec["suffix"]

    @property
    def users_base(self) -> str:
        return f"ou=people,{self.base_dn}"

    @property
    def groups_base(self) -> str:
        return f"ou=groups,{self.base_dn}"

    @property
    def bind_dn(self) -> str:
        return f"cn={self.spec['service_account']['cn']},ou=services,{self.base_dn}"

    @property
    def bind_password(self) -> str:
        return self.spec["service_account"]["password"]

    @property
    def admin_dn(self) -> str:
        return f"cn=admin,{self.base_dn}"

    @property
    def admin_password(self) -> str:
        return self.spec["admin_password"]

    @property
    def required_group(self) -> str:
        return self.spec["required_group"]

    @property
    def pid(self) -> int | None:
        return read_int(self.home / "slapd.pid")

    def user_dn(self, uid: str) -> str:
        return f"uid={uid},{self.users_base}"

    def group_dn(self, cn: str) -> str:
        return f"cn={cn},{self.groups_base}"

    def env(self) -> dict[str, str]:
        """Settings for the portal, as PORTAL_LDAP_* environment variables."""
        return {
            "PORTAL_LDAP_SERVER_URI": self.uri,
            "PORTAL_LDAP_START_TLS": "true",
            "PORTAL_LDAP_CA_CERT_FILE": self.ca_cert_file,
            "PORTAL_LDAP_BIND_DN": self.bind_dn,
            "PORTAL_LDAP_BIND_PASSWORD": self.bind_password,
            "PORTAL_LDAP_USER_SEARCH_BASE": self.users_base,
            "PORTAL_LDAP_GROUP_SEARCH_BASE": self.groups_base,
            "PORTAL_LDAP_GROUP_TYPE": "nestedGroupOfNames",
            "PORTAL_LDAP_REQUIRE_GROUP": self.group_dn(self.required_group),
        }

    # connections

    def connect(self, who: str | None = None, password: str | None = None, *,
                start_tls: bool = True, timeout: float = 5.0):
        """A bound python-ldap connection; as the directory admin unless `who` (a uid or DN)."""
        conn = ldap.initialize(self.uri)
        conn.protocol_version = 3
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, timeout)
        conn.set_option(ldap.OPT_TIMEOUT, timeout)
        if start_tls:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, self.ca_cert_file)
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
            conn.start_tls_s()
        if who is None:
            who, password = self.admin_dn, self.admin_password
        elif "=" not in who:
            who = self.user_dn(who)
        conn.simple_bind_s(who, password or "")
        return conn

    def _admin(self, action):
        conn = self.connect()
        try:
            return action(conn)
        finally:
            conn.unbind_s()

    # directory changes (made as the admin, so slapd's overlays keep memberOf/refint right)

    def add_user(self, uid: str, password: str | None = None, *, groups=(), given_name=None,
                 sn=None, mail=None, disabled: bool = False) -> str:
        user = {"uid": uid, "password": password or f"{uid}-password",
                "given_name": given_name or uid.capitalize(), "sn": sn or "Test",
                "mail": mail or f"{uid}@corral.test", "disabled": disabled}
        dn, attrs = user_entry(user, self.users_base)
        self._admin(lambda conn: conn.add_s(dn, ldap.modlist.addModlist(encode(attrs))))
        for group in groups:
            self.add_to_group(uid, group)
        return dn

    def delete_user(self, uid: str) -> None:
        """Delete the entry; the refint overlay drops it from every group."""
        self._admin(lambda conn: conn.delete_s(self.user_dn(uid)))

    def set_password(self, uid: str, password: str) -> None:
        self._modify(self.user_dn(uid), ldap.MOD_REPLACE, "userPassword", ssha(password))

    def lock_user(self, uid: str) -> None:
        """ppolicy lock: slapd refuses the user's bind from now on."""
        self._modify(self.user_dn(uid), ldap.MOD_REPLACE, "pwdAccountLockedTime", LOCKED_FOREVER)

    def unlock_user(self, uid: str) -> None:
        self._modify(self.user_dn(uid), ldap.MOD_DELETE, "pwdAccountLockedTime", None)

    def disable_user(self, uid: str) -> None:
        """Lock the account and take it out of the required group, as dave is."""
        self.lock_user(uid)
        try:
            self.remove_from_group(uid, self.required_group)
        except ldap.NO_SUCH_ATTRIBUTE:
            pass  # only a nested member of it, or not a member at all

    def enable_user(self, uid: str) -> None:
        self.unlock_user(uid)
        try:
            self.add_to_group(uid, self.required_group)
        except ldap.TYPE_OR_VALUE_EXISTS:
            pass

    def add_group(self, cn: str, *, users=(), groups=(), description: str | None = None) -> str:
        members = [self.user_dn(u) for u in users] + [self.group_dn(g) for g in groups]
        dn, attrs = group_entry(cn, description, members or [self.nobody_dn], self.groups_base)
        self._admin(lambda conn: conn.add_s(dn, ldap.modlist.addModlist(encode(attrs))))
        return dn

    def delete_group(self, cn: str) -> None:
        self._admin(lambda conn: conn.delete_s(self.group_dn(cn)))

    def add_to_group(self, member: str, group: str) -> None:
        """Add a user (uid) or any entry (DN, e.g. another group's) to `group`, creating it."""
        member_dn = member if "=" in member else self.user_dn(member)
        try:
            self._modify(self.group_dn(group), ldap.MOD_ADD, "member", member_dn)
        except ldap.NO_SUCH_OBJECT:
            dn, attrs = group_entry(group, None, [member_dn], self.groups_base)
            self._admin(lambda conn: conn.add_s(dn, ldap.modlist.addModlist(encode(attrs))))

    def remove_from_group(self, member: str, group: str) -> None:
        member_dn = member if "=" in member else self.user_dn(member)
        try:
            self._modify(self.group_dn(group), ldap.MOD_DELETE, "member", member_dn)
        except ldap.OBJECT_CLASS_VIOLATION:
            # groupOfNames needs a member: an emptied group keeps the placeholder refint uses.
            self._admin(lambda conn: conn.modify_s(self.group_dn(group), [
                (ldap.MOD_ADD, "member", [self.nobody_dn.encode()]),
                (ldap.MOD_DELETE, "member", [member_dn.encode()]),
            ]))

    @property
    def nobody_dn(self) -> str:
        return f"cn=nobody,{self.base_dn}"

    def _modify(self, dn: str, op: int, attr: str, value: str | None) -> None:
        values = None if value is None else [value.encode()]
        self._admin(lambda conn: conn.modify_s(dn, [(op, attr, values)]))

    # process control

    def is_running(self) -> bool:
        return pid_alive(self.pid) and port_accepts(self.port)

    def pause(self) -> None:
        """SIGSTOP slapd: connections are accepted by the kernel but never answered."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        pid = self.pid
        stop_pid(self.home / "slapd.pid")
        reap(pid)

    def start(self) -> None:
        """Start again (same port if still free) with the directory as it was left."""
        with locked(self.home):
            self.port = start_slapd(self.home, self.port)

    def reset(self) -> None:
        """Stop, reload the directory from the spec, start again: undo a test's changes."""
        with locked(self.home):
            stop_pid(self.home / "slapd.pid")
            load_directory(self.home, self.spec)
            convert_config(self.home)
            self.port = start_slapd(self.home, self.port)

    def destroy(self) -> None:
        """Stop and delete the instance's files."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def reap(pid: int | None) -> None:
    proc = _children.pop(pid, None) if pid else None
    if proc:
        proc.wait(timeout=10)


# --- building an instance ------------------------------------------------------------------

def ensure_slapd(var: Path, directory: dict | None = None, *, name: str = "default",
                 fresh: bool = False) -> LdapServer:
    """A private slapd under var/slapd-<name>/ serving `directory` (default_directory()).

    A running instance with the same spec is reused as it is (including earlier changes);
    `fresh=True` reloads the directory from the spec first. Use distinct names for
    instances that must coexist (one per test session, say).
    """
    spec = {**default_directory(), **directory} if directory else default_directory()
    home = Path(var).resolve() / f"slapd-{name}"
    digest = hashlib.sha256(json.dumps([GENERATOR_VERSION, spec], sort_keys=True).encode())
    digest = digest.hexdigest()
    with locked(home):
        server = LdapServer(home, read_int(home / "port") or 0, spec, str(home / "tls" / "ca.crt"))
        same_spec = (home / "spec.sha256").exists() and \
            (home / "spec.sha256").read_text().strip() == digest
        if same_spec and not fresh and server.port and server.is_running():
            return server
        stop_pid(home / "slapd.pid")
        require_slapd()
        write_certificates(home / "tls")
        write_config(home, spec)
        if fresh or not same_spec or not (home / "data" / "data.mdb").exists():
            load_directory(home, spec)
            (home / "spec.sha256").write_text(digest + "\n")
        convert_config(home)
        server.port = start_slapd(home, server.port or None)
        return server


def require_slapd() -> None:
    require_binary("/usr/sbin/slapd", "slapd")
    missing = [m for m in MODULES if not (MODULE_DIR / f"{m}.so").exists()]
    if missing:
        raise ServiceError(f"slapd modules missing from {MODULE_DIR}: {', '.join(missing)}")
    if not shutil.which("ldapsearch"):
        apt_install("ldap-utils")  # not needed here, but the docs and debugging rely on it


def slapd_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("openldap")
        return "openldap"
    except KeyError:
        return None


def write_certificates(tls: Path) -> None:
    """A CA and a server certificate for 127.0.0.1/localhost, made once per instance."""
    if (tls / "server.crt").exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tls.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corral test LDAP CA")])

    def builder(subject, public_key):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650)))

    ca_cert = (builder(ca_name, ca_key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                            False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                              critical=False)
               .sign(ca_key, hashes.SHA256()))
    server_cert = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
                           key.public_key())
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(True, False, True, False, False, False, False,
                                                False, False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False)
                   .add_extension(x509.SubjectAlternativeName([
                       x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                       x509.DNSName("localhost")]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False)
                   .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    private = {"encoding": pem, "format": serialization.PrivateFormat.PKCS8,
               "encryption_algorithm": serialization.NoEncryption()}
    (tls / "ca.key").write_bytes(ca_key.private_bytes(**private))
    (tls / "ca.crt").write_bytes(ca_cert.public_bytes(pem))
    (tls / "server.key").write_bytes(key.private_bytes(**private))
    (tls / "server.crt").write_bytes(server_cert.public_bytes(pem))
    for name in ("ca.key", "server.key"):
        os.chmod(tls / name, 0o600)


def write_config(home: Path, spec: dict) -> None:
    """slapd.conf for reading, converted to the cn=config directory slapd actually runs on."""
    suffix, nobody = spec["suffix"], f"cn=nobody,{spec['suffix']}"
    service = f"cn={spec['service_account']['cn']},ou=services,{suffix}"
    tls = home / "tls"
    limit = spec["size_limit"]
    lines = [f"include {SCHEMA_DIR / s}.schema" for s in SCHEMAS] + [
        f"modulepath {MODULE_DIR}",
        *[f"moduleload {m}.so" for m in MODULES],
        f"pidfile {home / 'slapd.pid'}",
        f"argsfile {home / 'slapd.args'}",
        "loglevel stats",
        f"TLSCACertificateFile {tls / 'ca.crt'}",
        f"TLSCertificateFile {tls / 'server.crt'}",
        f"TLSCertificateKeyFile {tls / 'server.key'}",
        f"sizelimit size.soft={limit} size.hard={limit} size.prtotal=unlimited",
        *(["security simple_bind=1 update_ssf=1"] if spec.get("require_tls") else []),
        "",
        "database config",  # the admin may change cn=config mid-test (e.g. require TLS)
        f'access to * by dn.exact="cn=admin,{suffix}" manage by * none',
        "",
        "database mdb",
        f'suffix "{suffix}"',
        f'rootdn "cn=admin,{suffix}"',
        f"rootpw {ssha(spec['admin_password'])}",
        f"directory {home / 'data'}",
        "maxsize 1073741824",
        "dbnosync",
        "index objectClass eq",
        "index uid,cn,mail eq,sub",
        "index member,memberOf eq",
        "overlay memberof",
        "memberof-group-oc groupOfNames",
        "memberof-member-ad member",
        "memberof-memberof-ad memberOf",
        "memberof-refint TRUE",
        "overlay refint",
        "refint_attributes member",
        f'refint_nothing "{nobody}"',
        "overlay ppolicy",
        f'ppolicy_default "cn=default,ou=policies,{suffix}"',
        "access to attrs=userPassword",
        "  by self write",
        "  by anonymous auth",
        "  by * none",
        'access to dn.base="" by * read',
        'access to dn.base="cn=Subschema" by * read',
        "access to *",
        f'  by dn.exact="{service}" read',
        "  by self read",
        "  by users read",
        "  by * none",
    ]
    (home / "slapd.conf").write_text("# Generated by tools/ldapdir.py\n" + "\n".join(lines) + "\n")
    (home / "data").mkdir(exist_ok=True)


def convert_config(home: Path) -> None:
    """slapd.conf -> slapd.d (cn=config), after slapadd: slaptest opens the database."""
    shutil.rmtree(home / "slapd.d", ignore_errors=True)
    (home / "slapd.d").mkdir()
    run(["/usr/sbin/slaptest", "-Q", "-f", str(home / "slapd.conf"), "-F", str(home / "slapd.d")])


def load_directory(home: Path, spec: dict) -> None:
    """Replace the database with the spec's entries in one offline slapadd."""
    shutil.rmtree(home / "data", ignore_errors=True)
    (home / "data").mkdir()
    ldif_path = home / "directory.ldif"
    with open(ldif_path, "w") as out:
        writer = LDIFWriter(out, cols=1000)
        for dn, attrs in directory_entries(spec):
            writer.unparse(dn, encode(attrs))
    run(["/usr/sbin/slapadd", "-q", "-b", spec["suffix"], "-f", str(home / "slapd.conf"),
         "-l", str(ldif_path)])


def start_slapd(home: Path, port: int | None) -> int:
    user = slapd_user()
    chown_tree(home, user)
    if user and (home / "tls" / "ca.key").exists():
        os.chown(home / "tls" / "ca.key", 0, 0)  # slapd needs only the server key
    port = free_port(port)
    (home / "port").write_text(f"{port}\n")
    log = home / "slapd.log"
    cmd = ["/usr/sbin/slapd", "-d", "stats", "-h", f"ldap://127.0.0.1:{port}/",
           "-F", str(home / "slapd.d")]
    if user:
        cmd += ["-u", user, "-g", user]
    (home / "slapd.pid").unlink(missing_ok=True)
    with open(log, "ab") as out:
        # -d keeps slapd in the foreground so its log lands in our file (no syslog here);
        # a new session detaches it from the caller's terminal and process group.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    _children[proc.pid] = proc

    def ready() -> bool:
        if proc.poll() is not None:
            raise ServiceError(f"slapd exited with {proc.returncode}\n"
                               f"--- last lines of {log} ---\n{log_tail(log)}")
        return read_int(home / "slapd.pid") == proc.pid and root_dse_answers(port)

    try:
        wait_until(ready, START_TIMEOUT, "slapd", log)
    except ServiceError:
        proc.kill()
        raise
    return port


def root_dse_answers(port: int) -> bool:
    conn = ldap.initialize(f"ldap://127.0.0.1:{port}")
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 1)
    conn.set_option(ldap.OPT_TIMEOUT, 1)
    try:
        conn.search_s("", ldap.SCOPE_BASE, attrlist=["namingContexts"])
        return True
    except ldap.LDAPError:
        return False
    finally:
        conn.unbind_s()


# --- entries -------------------------------------------------------------------------------
