# Sourced by the image's entrypoint (which stops on the first error).
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v database="$POSTGRES_DB" \
  -v migration_role="$TASKFLOW_MIGRATION_ROLE" \
  -v migration_password="$TASKFLOW_MIGRATION_PASSWORD" \
  -v service_role="$TASKFLOW_SERVICE_ROLE" \
  -v service_password="$TASKFLOW_SERVICE_PASSWORD" \
  -f /docker-entrypoint-initdb.d/roles.sql.in
