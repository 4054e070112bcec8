#!/bin/sh
# Bootstrap Keystone (every step is idempotent, so a restart on the same volume is safe), serve
# it, register Stratus in it (populate.py), then mark the container ready for its healthcheck.
# KEYSTONE_PORT (default 5000) is the port it serves on, KEYSTONE_LISTEN_ADDRESS (default
# 0.0.0.0) the address.
set -eu
port=${KEYSTONE_PORT:-5000}

rm -f /tmp/keystone-ready
manage() { keystone-manage --config-file /etc/keystone/keystone.conf "$@"; }

manage db_sync
manage fernet_setup --keystone-user keystone --keystone-group keystone
manage credential_setup --keystone-user keystone --keystone-group keystone
manage bootstrap \
    --bootstrap-password "${KEYSTONE_ADMIN_PASSWORD:?}" \
    --bootstrap-admin-url "${KEYSTONE_INTERNAL_URL:?}" \
    --bootstrap-internal-url "${KEYSTONE_INTERNAL_URL}" \
    --bootstrap-public-url "${KEYSTONE_PUBLIC_URL:?}" \
    --bootstrap-region-id RegionOne

gunicorn --no-control-socket --bind "${KEYSTONE_LISTEN_ADDRESS:-0.0.0.0}:$port" --workers 2 \
    --chdir /etc/keystone \
    stratus_keystone_wsgi:application &
server=$!
trap 'kill -TERM "$server"; wait "$server"; exit 0' TERM INT

KEYSTONE_URL="http://127.0.0.1:$port/v3" python /usr/local/bin/populate.py
touch /tmp/keystone-ready
wait "$server"
