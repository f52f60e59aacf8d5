#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at $TEST_DATABASE_URL (default: the local server,
# user postgres, database test) for the tests' PostgreSQL pass: installs it from Debian's
# packages when missing, starts the cluster when stopped, creates the database when absent.
# Sourced by scripts/test.sh; exports TEST_DATABASE_URL.
set -euo pipefail

export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
admin_url=${TEST_DATABASE_URL%/*}/postgres

if ! command -v pg_ctlcluster >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql postgresql-client
  version=$(ls /etc/postgresql | sort -V | tail -1)
  # A cluster just installed for the tests: local users log in over TCP without
  # a password, as on the development machines (the tests also log in as roles they create).
  sed -i '1i host all all 127.0.0.1/32 trust' "/etc/postgresql/$version/main/pg_hba.conf"
fi
version=$(ls /etc/postgresql | sort -V | tail -1)
if ! pg_isready -q -h 127.0.0.1; then
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  pg_isready -q -h 127.0.0.1 -t 60
fi
db=${TEST_DATABASE_URL##*/}
db=${db%%\?*}
if ! psql "$admin_url" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  psql "$admin_url" -qc "CREATE DATABASE \"$db\""
fi
# Databases left by earlier runs (each test creates its own, named nexus_t_…).
psql "$admin_url" -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'nexus\_t\_%'" |
  while read -r name; do psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)"; done
# Roles the least-privilege test created.
psql "$admin_url" -tAc "SELECT rolname FROM pg_roles WHERE rolname LIKE 'nexus\_app\_%'" |
  while read -r name; do psql "$admin_url" -qc "DROP ROLE IF EXISTS \"$name\""; done
