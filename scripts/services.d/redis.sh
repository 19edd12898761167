# Redis, one server (redis://127.0.0.1:6379).
REDIS_PORT=6379

redis_cli() { redis-cli -h 127.0.0.1 -p "$@" 2>/dev/null; }  # redis_cli PORT COMMAND...

redis_kill_pid() {  # redis_kill_pid PIDFILE
  local pid; pid="$(cat "$1" 2>/dev/null || true)"
  [[ -z "$pid" ]] || kill -9 "$pid" 2>/dev/null || true
  while [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$1"
}

# redis_node_config DIR PORT: a node's redis.conf, AOF on; the caller appends its role.
redis_node_config() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  cat > "$dir/redis.conf" <<CONF
bind 127.0.0.1
port $port
protected-mode yes
daemonize yes
dir $dir
pidfile $dir/redis.pid
logfile $dir/redis.log
appendonly yes
appendfsync everysec
save ""
CONF
}

redis_ping() { [[ "$(redis_cli $REDIS_PORT ping)" == PONG ]]; }

redis_up() {
  apt_install redis-server redis-tools
  redis_ping && return 0
  mkdir -p "$STATE/redis"
  # AOF on (fsync every second), so an acked XADD survives a restart; see README.
  redis-server --bind 127.0.0.1 --port $REDIS_PORT --protected-mode yes --daemonize yes \
    --dir "$STATE/redis" --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log" \
    --appendonly yes --appendfsync everysec --save ""
  wait_for 30 redis redis_ping
}

redis_down() { redis_ping && redis_cli $REDIS_PORT shutdown nosave >/dev/null || true; }

redis_reset() { redis_up; redis_cli $REDIS_PORT flushall >/dev/null; }

redis_kill() { redis_kill_pid "$STATE/redis/redis.pid"; }

