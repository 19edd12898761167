# Redis Cluster: six nodes on 127.0.0.1:7000-7005 (node 1..6), three primaries with one replica
# each, AOF on. A primary that dies is replaced by its replica after cluster-node-timeout (3 s);
# when it comes back it is a replica. `kill redis-cluster primary:KEY` names the primary
# serving KEY's slot.
REDIS_CLUSTER_PORTS=(7000 7001 7002 7003 7004 7005)
REDIS_CLUSTER_HOME="$STATE/redis-cluster"

redis_cluster_nodes() { echo 1 2 3 4 5 6; }
redis_cluster_port() { echo "${REDIS_CLUSTER_PORTS[$(($1 - 1))]}"; }
redis_cluster_info() { redis_cli "$(redis_cluster_port "$1")" cluster info | tr -d '\r' | sed -n "s/^$2://p"; }

redis_cluster_ping() {
  local n
  for n in $(redis_cluster_nodes); do
    [[ "$(redis_cluster_info "$n" cluster_state)" == ok ]] || return 1
    [[ "$(redis_cluster_info "$n" cluster_known_nodes)" == 6 ]] || return 1
    [[ "$(redis_cluster_info "$n" cluster_slots_ok)" == 16384 ]] || return 1
  done
  # A restarted node is known before the others clear its fail flag.
  ! redis_cli "${REDIS_CLUSTER_PORTS[0]}" cluster nodes | grep -q fail || return 1
  # ... and comes back as a replica that has yet to sync: until it has, it cannot take over
  # when its primary dies (Redis refuses a replica whose data is too old), and the cluster
  # would lose the primary's slots for good.
  local replicas=0
  for n in $(redis_cluster_nodes); do
    redis_cli "$(redis_cluster_port "$n")" info replication | tr -d '\r' | grep -q '^role:slave' || continue
    redis_cli "$(redis_cluster_port "$n")" info replication | tr -d '\r' | grep -q '^master_link_status:up' || return 1
    replicas=$((replicas + 1))
  done
  ((replicas == 3))
}

redis_cluster_config() {
  local n=$1 dir="$REDIS_CLUSTER_HOME/node$1"
  redis_node_config "$dir" "$(redis_cluster_port "$n")"
  cat >> "$dir/redis.conf" <<CONF
cluster-enabled yes
cluster-config-file $dir/nodes.conf
cluster-node-timeout 3000
CONF
}

redis_cluster_up() {
  apt_install redis-server redis-tools
  local n
  for n in $(redis_cluster_nodes); do
    [[ "$(redis_cli "$(redis_cluster_port "$n")" ping)" == PONG ]] && continue
    redis_cluster_config "$n"
    redis-server "$REDIS_CLUSTER_HOME/node$n/redis.conf"
  done
  for n in $(redis_cluster_nodes); do wait_for 30 "redis-cluster node $n" redis_cli "$(redis_cluster_port "$n")" ping; done
  if [[ "$(redis_cluster_info 1 cluster_known_nodes)" == 1 ]]; then
    redis-cli --cluster create "${REDIS_CLUSTER_PORTS[@]/#/127.0.0.1:}" --cluster-replicas 1 \
      --cluster-yes >"$REDIS_CLUSTER_HOME/create.log" 2>&1 ||
      die "redis-cluster: creating the cluster failed: $(tail -3 "$REDIS_CLUSTER_HOME/create.log")"
  fi
  wait_for 90 redis-cluster redis_cluster_ping
}

redis_cluster_down() {
  local n; for n in $(redis_cluster_nodes); do redis_cli "$(redis_cluster_port "$n")" shutdown nosave >/dev/null || true; done
}

redis_cluster_primaries() {  # the ports of the nodes that are primaries now
  redis_cli "${REDIS_CLUSTER_PORTS[0]}" cluster nodes |
    awk '$3 ~ /master/ && $3 !~ /fail/ { split($2, a, "[:@]"); print a[2] }'
}

redis_cluster_reset() {
  redis_cluster_up
  local port; for port in $(redis_cluster_primaries); do redis_cli "$port" flushall >/dev/null; done
}

# The port of the live primary whose slot ranges (fields 9 on of CLUSTER NODES) hold SLOT.
redis_cluster_slot_owner() {  # redis_cluster_slot_owner ASK_NODE SLOT
  redis_cli "$(redis_cluster_port "$1")" cluster nodes | awk -v s="$2" '
    $3 ~ /master/ && $3 !~ /fail/ {
      for (i = 9; i <= NF; i++) {
        n = split($i, r, "-"); lo = r[1]; hi = (n == 2 ? r[2] : r[1])
        if (s + 0 >= lo + 0 && s + 0 <= hi + 0) { split($2, a, "[:@]"); print a[2]; exit }
      }
    }'
}

redis_cluster_which() {  # primary:KEY | N
  local what=$1 n ask="" slot port
  [[ "$what" =~ ^[1-6]$ ]] && { echo "$what"; return; }
  [[ "$what" == primary:* ]] || die "redis-cluster: a node is 1..6 or primary:KEY, not $what"
  for n in $(redis_cluster_nodes); do
    [[ "$(redis_cli "$(redis_cluster_port "$n")" ping)" == PONG ]] && { ask=$n; break; }
  done
  [[ -n "$ask" ]] || die "redis-cluster: no node answers"
  slot="$(redis_cli "$(redis_cluster_port "$ask")" cluster keyslot "${what#primary:}")"
  port="$(redis_cluster_slot_owner "$ask" "$slot")"
  for n in $(redis_cluster_nodes); do [[ "$(redis_cluster_port "$n")" == "$port" ]] && { echo "$n"; return; }; done
  die "redis-cluster: no live primary serves ${what#primary:} (slot $slot)"
}

redis_cluster_kill() {
  local n; n="$(redis_cluster_which "${1:?redis-cluster: kill which node?}")"
  redis_kill_pid "$REDIS_CLUSTER_HOME/node$n/redis.pid"
  echo "$n"
}
