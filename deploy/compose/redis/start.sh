#!/bin/sh
# Redis for docker-compose.yml with the Kubernetes manifests' ACL users (docs/security.md,
# "Redis"): users.acl.in is deploy/k8s/base/20-secrets.example.yaml's users.acl with a
# placeholder per password; each is filled from this container's environment, then the image's
# own entrypoint starts Redis (as the redis user) with that file. The default user is off.
set -eu
acl=${TASKFLOW_ACL_FILE:-/tmp/users.acl}
template=${TASKFLOW_ACL_TEMPLATE:-/etc/taskflow/users.acl.in}
sed \
  -e "s|@USER_SERVICE_REDIS_PASSWORD@|${USER_SERVICE_REDIS_PASSWORD:?}|" \
  -e "s|@TASK_SERVICE_REDIS_PASSWORD@|${TASK_SERVICE_REDIS_PASSWORD:?}|" \
  -e "s|@STATS_SERVICE_REDIS_PASSWORD@|${STATS_SERVICE_REDIS_PASSWORD:?}|" \
  -e "s|@GATEWAY_REDIS_PASSWORD@|${GATEWAY_REDIS_PASSWORD:?}|" \
  "$template" >"$acl"
if grep -q "@[A-Z_]*_REDIS_PASSWORD@" "$acl"; then
  echo "users.acl.in has a placeholder this script does not fill" >&2
  exit 1
fi
chmod 0644 "$acl"
exec docker-entrypoint.sh redis-server --appendonly yes --aclfile "$acl"
