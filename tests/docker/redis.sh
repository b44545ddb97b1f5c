#!/bin/sh
# Redis from Debian's redis-server on the test's base image (tools/docker.py), standing in for the
# official redis:7 image: the compose file's `redis-server ...` command, as the redis user, in /data.
set -eu
if [ "$(id -u)" = 0 ]; then
    mkdir -p /data && chown redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
cd /data
exec "$@"
