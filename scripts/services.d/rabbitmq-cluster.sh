# Three RabbitMQ nodes clustered (mqkit-1@localhost .. mqkit-3@localhost), AMQP on
# 127.0.0.1:5681-5683, Erlang distribution on 25681-25683; queues are quorum queues (the client
# asks for them when its URL names several hosts). Node files live under /var/lib/rabbitmq,
# which the rabbitmq user that runs them can reach ($STATE may be in root's home).
RABBITMQ_CLUSTER_PORTS=(5681 5682 5683)
RABBITMQ_CLUSTER_HOME=/var/lib/rabbitmq/mqkit-cluster

rabbitmq_cluster_nodes() { echo 1 2 3; }
rabbitmq_cluster_port() { echo "${RABBITMQ_CLUSTER_PORTS[$(($1 - 1))]}"; }
rabbitmq_cluster_dir() { echo "$RABBITMQ_CLUSTER_HOME/node$1"; }
rabbitmq_cluster_name() { echo "mqkit-$1@localhost"; }
rabbitmq_cluster_ctl() { local n=$1; shift; rabbitmqctl -n "$(rabbitmq_cluster_name "$n")" "$@"; }

# rabbitmq_cluster_members N [running_nodes|disk_nodes]: the node names that node N knows.
rabbitmq_cluster_members() {
  rabbitmq_cluster_ctl "$1" -q cluster_status --formatter json 2>/dev/null |
    python3 -c "import json,sys; print(*json.load(sys.stdin)['${2:-running_nodes}'])"
}

rabbitmq_cluster_node_ping() {
  port_open "$(rabbitmq_cluster_port "$1")" &&
    [[ "$(rabbitmq_cluster_members "$1" | wc -w)" == 3 ]]
}

# Whole again only once no node is quorum-critical: a node that was restarted takes a while to
# bring its quorum queue members back in line, and losing another node before then left a
# queue without a leader that accepts writes (a chaos run stalled on it).
rabbitmq_cluster_ping() {
  local n; for n in $(rabbitmq_cluster_nodes); do rabbitmq_cluster_node_ping "$n" || return 1; done
  for n in $(rabbitmq_cluster_nodes); do
    rabbitmq-queues -n "$(rabbitmq_cluster_name "$n")" -q check_if_node_is_quorum_critical >/dev/null 2>&1 || return 1
  done
}

rabbitmq_cluster_config() {
  local n=$1 dir port; dir="$(rabbitmq_cluster_dir "$n")"; port="$(rabbitmq_cluster_port "$n")"
  mkdir -p "$dir/mnesia" "$dir/log"
  cat > "$dir/rabbitmq.conf" <<CONF
# written by mqkit scripts/services: loopback only
listeners.tcp.default = 127.0.0.1:$port
loopback_users.guest = true
# The minority side of a partition stops rather than accept writes the majority never sees.
cluster_partition_handling = pause_minority
CONF
  cat > "$dir/rabbitmq-env.conf" <<CONF
# written by mqkit scripts/services (see rabbitmq.sh for the ulimit)
ulimit -S -n "\$(ulimit -H -n)" 2>/dev/null || true
NODENAME=$(rabbitmq_cluster_name "$n")
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=$port
DIST_PORT=$((port + 20000))
ERL_EPMD_ADDRESS=127.0.0.1
CONFIG_FILE=$dir/rabbitmq.conf
MNESIA_BASE=$dir/mnesia
LOG_BASE=$dir/log
ENABLED_PLUGINS_FILE=$dir/enabled_plugins
PID_FILE=$dir/rabbit.pid
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CONF
  echo "[]." > "$dir/enabled_plugins"
  chown -R rabbitmq:rabbitmq "$RABBITMQ_CLUSTER_HOME"
}

rabbitmq_cluster_start() {
  local dir; dir="$(rabbitmq_cluster_dir "$1")"
  (cd /var/lib/rabbitmq && su rabbitmq -s /bin/sh -c \
    "RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf /usr/lib/rabbitmq/bin/rabbitmq-server -detached" \
    >"$dir/log/detached.log" 2>&1) || true
}

rabbitmq_cluster_up() {
  apt_install rabbitmq-server amqp-tools
  rabbitmq_epmd
  local n started=()
  for n in $(rabbitmq_cluster_nodes); do
    port_open "$(rabbitmq_cluster_port "$n")" && continue
    rabbitmq_cluster_config "$n"
    rabbitmq_cluster_start "$n"
    started+=("$n")
  done
  # Started together: a node that was clustered waits at boot for the others it knew.
  for n in "${started[@]}"; do
    wait_for 180 "rabbitmq-cluster node $n" port_open "$(rabbitmq_cluster_port "$n")"
    wait_for 60 "rabbitmq-cluster node $n" rabbitmq_cluster_ctl "$n" -q await_startup
  done
  for n in 2 3; do
    [[ " $(rabbitmq_cluster_members 1 disk_nodes) " == *" $(rabbitmq_cluster_name "$n") "* ]] && continue
    log "rabbitmq-cluster: node $n joins node 1"
    local joining; joining="$(rabbitmq_cluster_dir "$n")/log/join.log"
    { rabbitmq_cluster_ctl "$n" -q stop_app && rabbitmq_cluster_ctl "$n" -q reset &&
      rabbitmq_cluster_ctl "$n" -q join_cluster "$(rabbitmq_cluster_name 1)" &&
      rabbitmq_cluster_ctl "$n" -q start_app; } >"$joining" 2>&1 ||
      die "rabbitmq-cluster: node $n could not join node 1: $(tail -3 "$joining")"
  done
  wait_for 120 rabbitmq-cluster rabbitmq_cluster_ping
  rabbitmq_cluster_ctl 1 -q list_vhosts | grep -qx "$RABBITMQ_VHOST" || rabbitmq_vhost -n "$(rabbitmq_cluster_name 1)"
}

rabbitmq_cluster_down() {
  local n
  for n in $(rabbitmq_cluster_nodes); do
    port_open "$(rabbitmq_cluster_port "$n")" && { rabbitmq_cluster_ctl "$n" -q stop >/dev/null 2>&1 || true; } &
  done
  wait
}

rabbitmq_cluster_reset() {
  rabbitmq_cluster_up
  rabbitmq_cluster_ctl 1 -q delete_vhost "$RABBITMQ_VHOST" >/dev/null 2>&1 || true
  rabbitmq_vhost -n "$(rabbitmq_cluster_name 1)"
}

# rabbitmq_cluster_which leader:QUEUE | N: the node, asked of any running node.
rabbitmq_cluster_which() {
  local what=$1 n
  [[ "$what" =~ ^[123]$ ]] && { echo "$what"; return; }
  [[ "$what" == leader:* ]] || die "rabbitmq-cluster: a node is 1, 2, 3 or leader:QUEUE, not $what"
  for n in $(rabbitmq_cluster_nodes); do
    port_open "$(rabbitmq_cluster_port "$n")" || continue
    local leader
    leader="$(rabbitmq_cluster_ctl "$n" -q list_queues -p "$RABBITMQ_VHOST" name leader --no-table-headers 2>/dev/null |
      awk -v q="${what#leader:}" '$1 == q { print $2 }')"
    [[ "$leader" =~ ^mqkit-([123])@ ]] && { echo "${BASH_REMATCH[1]}"; return; }
    die "rabbitmq-cluster: no leader for queue ${what#leader:} (${leader:-no such queue})"
  done
  die "rabbitmq-cluster: no node is running"
}

rabbitmq_cluster_kill() {
  local n; n="$(rabbitmq_cluster_which "${1:?rabbitmq-cluster: kill which node?}")"
  rabbitmq_kill_pid "$(rabbitmq_cluster_dir "$n")/rabbit.pid"
  echo "$n"
}
