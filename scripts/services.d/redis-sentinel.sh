# Redis with Sentinel: a primary on 127.0.0.1:6390 and two replicas on 6391 and 6392 (node 1..3,
# AOF on), watched by three Sentinels on 26379-26381 under the master name `mqkit` (quorum 2).
# Which node is primary changes with every failover: ask a Sentinel (`kill redis-sentinel
# primary`). Each node's config is written once: Sentinel rewrites it when it moves roles.
REDIS_SENTINEL_PORTS=(6390 6391 6392)
REDIS_SENTINEL_SENTINELS=(26379 26380 26381)
REDIS_SENTINEL_HOME="$STATE/redis-sentinel"

redis_sentinel_nodes() { echo 1 2 3; }
redis_sentinel_port() { echo "${REDIS_SENTINEL_PORTS[$(($1 - 1))]}"; }

redis_sentinel_field() {  # redis_sentinel_field SENTINEL_PORT FIELD: from SENTINEL MASTER mqkit
  redis_cli "$1" sentinel master mqkit | awk -v f="$2" 'prev == f { print; exit } { prev = $0 }'
}

redis_sentinel_ping() {
  local n s
  for n in $(redis_sentinel_nodes); do [[ "$(redis_cli "$(redis_sentinel_port "$n")" ping)" == PONG ]] || return 1; done
  for s in "${REDIS_SENTINEL_SENTINELS[@]}"; do
    [[ "$(redis_sentinel_field "$s" flags)" == master ]] || return 1
    [[ "$(redis_sentinel_field "$s" num-slaves)" == 2 ]] || return 1
    [[ "$(redis_sentinel_field "$s" num-other-sentinels)" == 2 ]] || return 1
  done
  local primary; primary="$(redis_sentinel_primary_port)"
  [[ "$(redis_cli "$primary" info replication | grep -c 'state=online')" == 2 ]]
}

redis_sentinel_primary_port() {
  local s
  for s in "${REDIS_SENTINEL_SENTINELS[@]}"; do
    redis_cli "$s" sentinel get-master-addr-by-name mqkit | sed -n 2p | grep . && return 0
  done
  return 1
}

redis_sentinel_node_config() {
  local n=$1 dir="$REDIS_SENTINEL_HOME/node$1"
  [[ -f "$dir/redis.conf" ]] && return 0
  redis_node_config "$dir" "$(redis_sentinel_port "$n")"
  ((n == 1)) || echo "replicaof 127.0.0.1 ${REDIS_SENTINEL_PORTS[0]}" >> "$dir/redis.conf"
}

redis_sentinel_sentinel_config() {
  local port=$1 dir="$REDIS_SENTINEL_HOME/sentinel-$1"
  mkdir -p "$dir"
  [[ -f "$dir/sentinel.conf" ]] && return 0
  cat > "$dir/sentinel.conf" <<CONF
bind 127.0.0.1
port $port
daemonize yes
dir $dir
pidfile $dir/sentinel.pid
logfile $dir/sentinel.log
sentinel monitor mqkit 127.0.0.1 ${REDIS_SENTINEL_PORTS[0]} 2
sentinel down-after-milliseconds mqkit 2000
sentinel failover-timeout mqkit 10000
sentinel parallel-syncs mqkit 1
CONF
}

redis_sentinel_up() {
  apt_install redis-server redis-tools
  local n s
  for n in $(redis_sentinel_nodes); do
    [[ "$(redis_cli "$(redis_sentinel_port "$n")" ping)" == PONG ]] && continue
    redis_sentinel_node_config "$n"
    redis-server "$REDIS_SENTINEL_HOME/node$n/redis.conf"
  done
  for s in "${REDIS_SENTINEL_SENTINELS[@]}"; do
    [[ "$(redis_cli "$s" ping)" == PONG ]] && continue
    redis_sentinel_sentinel_config "$s"
    redis-server "$REDIS_SENTINEL_HOME/sentinel-$s/sentinel.conf" --sentinel
  done
  # Sentinels find the replicas and each other through the primary: seconds, not at once.
  wait_for 90 redis-sentinel redis_sentinel_ping
}

redis_sentinel_down() {
  local n s
  for s in "${REDIS_SENTINEL_SENTINELS[@]}"; do redis_cli "$s" shutdown nosave >/dev/null || true; done
  for n in $(redis_sentinel_nodes); do redis_cli "$(redis_sentinel_port "$n")" shutdown nosave >/dev/null || true; done
}

redis_sentinel_reset() {
  redis_sentinel_up
  local primary; primary="$(redis_sentinel_primary_port)"
  redis_cli "$primary" flushall >/dev/null
  redis_cli "$primary" wait 2 5000 >/dev/null
}

redis_sentinel_which() {  # primary | N
  local what=$1 port n
  [[ "$what" =~ ^[123]$ ]] && { echo "$what"; return; }
  [[ "$what" == primary ]] || die "redis-sentinel: a node is 1, 2, 3 or primary, not $what"
  port="$(redis_sentinel_primary_port)" || die "redis-sentinel: no Sentinel answers"
  for n in $(redis_sentinel_nodes); do [[ "$(redis_sentinel_port "$n")" == "$port" ]] && { echo "$n"; return; }; done
  die "redis-sentinel: the primary is on $port, not one of ours"
}

redis_sentinel_kill() {
  local n; n="$(redis_sentinel_which "${1:?redis-sentinel: kill which node?}")"
  redis_kill_pid "$REDIS_SENTINEL_HOME/node$n/redis.pid"
  echo "$n"
}
