#!/bin/sh
# Creates and migrates Temporal's two PostgreSQL databases (persistence and visibility), idempotently, with
# temporal-sql-tool and the schema of the same server version. The one copy of these steps: docker-compose.yml's
# temporal-admin-tools runs it (the tool and schema of the temporalio/admin-tools image) and `ferry cluster up`
# runs it (the tool and schema built into .tools/temporal/<version>/ by scripts/install-deps).
#
#   SQL_TOOL     temporal-sql-tool binary        (default: temporal-sql-tool on PATH)
#   SCHEMA_DIR   the schema/ of the server module (default: /etc/temporal/schema, the admin-tools image's)
#   SQL_HOST, SQL_PORT (5432), SQL_USER (temporal), SQL_PASSWORD (read by the tool from the environment)
#   DBNAME (temporal), VISIBILITY_DBNAME (temporal_visibility)
set -eu
tool=${SQL_TOOL:-temporal-sql-tool}
schema=${SCHEMA_DIR:-/etc/temporal/schema}/postgresql/v12
: "${SQL_HOST:?SQL_HOST is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD is required}"
export SQL_PASSWORD
for pair in "${DBNAME:-temporal}:temporal" "${VISIBILITY_DBNAME:-temporal_visibility}:visibility"; do
  db=${pair%%:*}
  dir=${pair#*:}
  set -- --plugin postgres12 --ep "$SQL_HOST" -p "${SQL_PORT:-5432}" -u "${SQL_USER:-temporal}" --db "$db"
  # create: fails when the database exists (fine); setup-schema -v 0.0: a no-op when the version table exists.
  "$tool" "$@" create-database >/dev/null 2>&1 || true
  "$tool" "$@" setup-schema -v 0.0 >/dev/null 2>&1 || true
  "$tool" "$@" update-schema -d "$schema/$dir/versioned"
done
