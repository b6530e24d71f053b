# Sourced by scripts/test: a PostgreSQL server for the inventory tests, exported as FERRY_TEST_PG_URL.
# Idempotent: starts the local cluster (Debian's postgresql, installed by scripts/install-deps) when it is
# down, creates it when missing, (re)creates the login role `ferry` and the database `ferry_test` it owns.
# The password is generated once into .tools/postgres-test-password (mode 600) and never printed; it reaches
# psql through the environment, not argv. An already exported FERRY_TEST_PG_URL (an external server) is used
# as is. FERRY_SKIP_PG is cleared: in CI the PostgreSQL variant of the tests always runs.

unset FERRY_SKIP_PG
if [ -n "${FERRY_TEST_PG_URL:-}" ]; then
  printf '\033[1m==> %s\033[0m\n' "inventory tests use the PostgreSQL server given in FERRY_TEST_PG_URL"
else
  ferry_pg_setup() {
    local version cluster=main port status pw
    version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then
      echo "PostgreSQL is not installed: run scripts/install-deps (it installs Debian's postgresql)" >&2
      return 1
    fi
    if ! pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { found = 1 } END { exit !found }'; then
      printf '\033[1m==> %s\033[0m\n' "creating the PostgreSQL ${version} cluster ${cluster}"
      pg_createcluster "$version" "$cluster"
    fi
    status=$(pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $4 }')
    port=$(pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $3 }')
    if [ "$status" != online ]; then
      printf '\033[1m==> %s\033[0m\n' "starting PostgreSQL ${version}/${cluster} on port ${port}"
      pg_ctlcluster "$version" "$cluster" start
    fi
    pg_isready -q -h 127.0.0.1 -p "$port" -t 60

    mkdir -p .tools
    if [ ! -s .tools/postgres-test-password ]; then
      (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > .tools/postgres-test-password)
    fi
    pw=$(cat .tools/postgres-test-password)
    # CREATE DATABASE cannot run inside a transaction: \gexec runs each generated statement on its own.
    (cd / && FERRY_PG_PASSWORD="$pw" runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres) <<'SQL'
\getenv pw FERRY_PG_PASSWORD
SELECT 'CREATE ROLE ferry LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ferry') \gexec
ALTER ROLE ferry LOGIN PASSWORD :'pw';
SELECT 'CREATE DATABASE ferry_test OWNER ferry' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ferry_test') \gexec
ALTER DATABASE ferry_test OWNER TO ferry;
SQL
    FERRY_TEST_PG_URL="postgres://ferry:${pw}@127.0.0.1:${port}/ferry_test"
    export FERRY_TEST_PG_URL
    printf '\033[1m==> %s\033[0m\n' "inventory tests use PostgreSQL ${version} at postgres://ferry:***@127.0.0.1:${port}/ferry_test"
  }
  ferry_pg_setup
  unset -f ferry_pg_setup
fi
