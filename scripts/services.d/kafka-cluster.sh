# Three KRaft nodes, each broker and controller (a 3-voter quorum), on 127.0.0.1:19092-19094:
# topics replicated 3 times, writes with acks=all need 2 in sync.
KAFKA_CLUSTER_PORTS=(19092 19093 19094)
KAFKA_CLUSTER_HOME="$STATE/kafka-cluster"

kafka_cluster_nodes() { echo 1 2 3; }
kafka_cluster_port() { echo "${KAFKA_CLUSTER_PORTS[$(($1 - 1))]}"; }
kafka_cluster_dir() { echo "$KAFKA_CLUSTER_HOME/node$1"; }
kafka_cluster_bootstrap() { local IFS=,; echo "${KAFKA_CLUSTER_PORTS[*]/#/127.0.0.1:}"; }

kafka_cluster_node_ping() {
  local port; port="$(kafka_cluster_port "$1")"
  port_open "$port" && kafka_metadata "127.0.0.1:$port" | grep -q "^ *3 brokers:"
}

kafka_cluster_ping() {
  local n; for n in $(kafka_cluster_nodes); do kafka_cluster_node_ping "$n" || return 1; done
}

kafka_cluster_up() {
  kafka_tools
  local n port voters=""
  for n in $(kafka_cluster_nodes); do voters+="${voters:+,}$n@127.0.0.1:$(($(kafka_cluster_port "$n") + 100))"; done
  for n in $(kafka_cluster_nodes); do
    [[ -n "$(kafka_node_pids "$(kafka_cluster_dir "$n")")" ]] && continue
    port="$(kafka_cluster_port "$n")"
    kafka_node_config "$(kafka_cluster_dir "$n")" "$n" "$port" $((port + 100)) "$voters" 3 2
    kafka_node_start "$(kafka_cluster_dir "$n")" 512m
  done
  # A node answers metadata only once the quorum has elected a controller: all three together.
  wait_for 180 kafka-cluster kafka_cluster_ping
}

kafka_cluster_down() {
  local n; for n in $(kafka_cluster_nodes); do kafka_node_stop "$(kafka_cluster_dir "$n")" & done; wait
}

kafka_cluster_reset() {
  kafka_cluster_down
  rm -rf "$KAFKA_CLUSTER_HOME"
  kafka_cluster_up
}

# kafka_nodes_which NAME BOOTSTRAP leader:TOPIC[:PARTITION] | N: the node id, asked of any
# live node of the three at BOOTSTRAP (kafka-cluster's, kafka-netns's).
kafka_nodes_which() {
  local name=$1 bootstrap=$2 what=$3
  [[ "$what" =~ ^[123]$ ]] && { echo "$what"; return; }
  [[ "$what" == leader:* ]] || die "$name: a node is 1, 2, 3 or leader:TOPIC[:PARTITION], not $what"
  local topic=${what#leader:} partition=0
  [[ "$topic" == *:* ]] && { partition=${topic##*:}; topic=${topic%:*}; }
  local leader
  leader="$(kafka_metadata "$bootstrap" -t "$topic" |
    sed -n "s/^ *partition $partition, leader \([0-9-]*\),.*/\1/p")"
  [[ "$leader" =~ ^[123]$ ]] || die "$name: no leader for $topic[$partition] (${leader:-no such topic})"
  echo "$leader"
}

kafka_cluster_which() { kafka_nodes_which kafka-cluster "$(kafka_cluster_bootstrap)" "$1"; }

kafka_cluster_kill() {
  local n; n="$(kafka_cluster_which "${1:?kafka-cluster: kill which node?}")"
  kafka_node_stop "$(kafka_cluster_dir "$n")" KILL
  echo "$n"
}
