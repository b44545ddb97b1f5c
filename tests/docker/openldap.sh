#!/bin/sh
# OpenLDAP from Debian's slapd on the test's base image (tools/docker.py), standing in for
# osixia/openldap with its LDAP_DOMAIN / LDAP_ORGANISATION / LDAP_ADMIN_PASSWORD variables.
# A slapd serving LDAP_DOMAIN (dc=example,dc=org) from /var/lib/ldap: on first start the base,
# ou=people and ou=groups, then every /seed/*.ldif; LDAP_PORT (default 389) on all addresses.
set -eu
if [ "$(id -u)" = 0 ]; then
    mkdir -p /var/lib/ldap && chown openldap:openldap /var/lib/ldap
    exec setpriv --reuid=openldap --regid=openldap --init-groups "$0" "$@"
fi
: "${LDAP_DOMAIN:=example.org}" "${LDAP_ORGANISATION:=Example}" "${LDAP_PORT:=389}"
suffix=$(printf 'dc=%s' "$LDAP_DOMAIN" | sed 's/\./,dc=/g')
first=${LDAP_DOMAIN%%.*}
conf=/tmp/slapd.conf
cat > "$conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile /tmp/slapd.pid
database mdb
maxsize 104857600
suffix "$suffix"
rootdn "cn=admin,$suffix"
rootpw ${LDAP_ADMIN_PASSWORD:?set LDAP_ADMIN_PASSWORD}
directory /var/lib/ldap
index objectClass eq
index uid,cn,member,memberUid eq
CONF
if [ ! -e /var/lib/ldap/.seeded ]; then
    rm -f /var/lib/ldap/*.mdb  # the database Debian's postinst made (dc=nodomain) is not ours
    {
        printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: %s\no: %s\n\n' "$suffix" "$first" "$LDAP_ORGANISATION"
        printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$suffix"
        printf 'dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n' "$suffix"
        for seed in /seed/*.ldif; do [ -e "$seed" ] && { cat "$seed"; echo; }; done
    } | slapadd -f "$conf" -b "$suffix"
    touch /var/lib/ldap/.seeded
fi
exec slapd -f "$conf" -h "ldap://0.0.0.0:$LDAP_PORT/" -d 0
