# PostgreSQL (127.0.0.1:5432), database and role mqkit.
POSTGRES_PORT=5432

as_postgres() { (cd / && su postgres -c "$1"); }  # from / : su keeps the cwd, which may be private

postgres_version() { ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1; }
postgres_ping() { pg_isready -q -h 127.0.0.1 -p $POSTGRES_PORT; }

postgres_up() {
  apt_install postgresql postgresql-client
  local v; v="$(postgres_version)"
  [[ -n "$v" ]] || die "postgresql is not installed"
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}' | grep -qx "$v/main"; then
    pg_createcluster "$v" main >/dev/null
  fi
  local conf="/etc/postgresql/$v/main/postgresql.conf"
  grep -q "^listen_addresses = '127.0.0.1'" "$conf" || echo "listen_addresses = '127.0.0.1'" >> "$conf"
  grep -q "^port = $POSTGRES_PORT" "$conf" || echo "port = $POSTGRES_PORT" >> "$conf"
  postgres_ping || pg_ctlcluster "$v" main start
  wait_for 60 postgres postgres_ping
  as_postgres "psql -q -p $POSTGRES_PORT -tc \"SELECT 1 FROM pg_roles WHERE rolname='mqkit'\"" | grep -q 1 ||
    as_postgres "psql -q -p $POSTGRES_PORT -c \"CREATE ROLE mqkit LOGIN PASSWORD 'mqkit' CREATEDB\""
  as_postgres "psql -q -p $POSTGRES_PORT -tc \"SELECT 1 FROM pg_database WHERE datname='mqkit'\"" | grep -q 1 ||
    as_postgres "createdb -p $POSTGRES_PORT -O mqkit mqkit"
}

postgres_down() { local v; v="$(postgres_version)"; [[ -z "$v" ]] || pg_ctlcluster "$v" main stop 2>/dev/null || true; }

postgres_reset() {
  postgres_up
  as_postgres "dropdb -p $POSTGRES_PORT --force --if-exists mqkit && createdb -p $POSTGRES_PORT -O mqkit mqkit"
}

postgres_kill() { pkill -9 -f "postgres -D" || true; }

