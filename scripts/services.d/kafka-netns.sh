# Three KRaft nodes as in kafka-cluster, each in a network namespace of its own, so that one
# can be cut off from the others and from the clients (the partition test): node N listens
# on 10.213.0.1N:9092 (controller :9093) in namespace mqkit-kafkaN, joined to the host by a
# veth pair on the bridge mqkit-br0 (10.213.0.1/24). These addresses exist only on this
# machine: the bridge has no uplink and the host does not forward. `partition kafka-netns
# NODE` takes the node's link down (no packet in or out, no RST: as a pulled cable), `heal
# kafka-netns [NODE]` brings it (or every one) back.
KAFKA_NETNS_BRIDGE=mqkit-br0
KAFKA_NETNS_NET=10.213.0
KAFKA_NETNS_HOME="$STATE/kafka-netns"

kafka_netns_nodes() { echo 1 2 3; }
kafka_netns_host() { echo "$KAFKA_NETNS_NET.1$1"; }
kafka_netns_ns() { echo "mqkit-kafka$1"; }
kafka_netns_link() { echo "mqkit-k$1"; }   # the host's end of node N's veth pair
kafka_netns_dir() { echo "$KAFKA_NETNS_HOME/node$1"; }
kafka_netns_bootstrap() {
  local IFS=$' \t\n' n out=""; for n in $(kafka_netns_nodes); do out+="${out:+,}$(kafka_netns_host "$n"):9092"; done
  echo "$out"
}

kafka_netns_network() {
  local n ns link
  if ! ip link show "$KAFKA_NETNS_BRIDGE" >/dev/null 2>&1; then
    ip link add "$KAFKA_NETNS_BRIDGE" type bridge
    ip addr add "$KAFKA_NETNS_NET.1/24" dev "$KAFKA_NETNS_BRIDGE"
  fi
  ip link set "$KAFKA_NETNS_BRIDGE" up
  for n in $(kafka_netns_nodes); do
    ns="$(kafka_netns_ns "$n")" link="$(kafka_netns_link "$n")"
    [[ -e "/run/netns/$ns" ]] || ip netns add "$ns"
    if ! ip link show "$link" >/dev/null 2>&1; then
      ip link add "$link" type veth peer name eth0 netns "$ns"
      ip link set "$link" master "$KAFKA_NETNS_BRIDGE"
      ip -n "$ns" addr add "$(kafka_netns_host "$n")/24" dev eth0
    fi
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
  done
}

kafka_netns_node_ping() {
  local host; host="$(kafka_netns_host "$1")"
  port_open 9092 "$host" && kafka_metadata "$host:9092" | grep -q "^ *3 brokers:"
}

kafka_netns_ping() {
  local n; for n in $(kafka_netns_nodes); do kafka_netns_node_ping "$n" || return 1; done
}

kafka_netns_up() {
  kafka_tools
  [[ $EUID -eq 0 ]] || die "kafka-netns: network namespaces need root"
  kafka_netns_network
  kafka_netns_heal
  local n voters=""
  for n in $(kafka_netns_nodes); do voters+="${voters:+,}$n@$(kafka_netns_host "$n"):9093"; done
  for n in $(kafka_netns_nodes); do
    [[ -n "$(kafka_node_pids "$(kafka_netns_dir "$n")")" ]] && continue
    kafka_node_config "$(kafka_netns_dir "$n")" "$n" 9092 9093 "$voters" 3 2 "$(kafka_netns_host "$n")"
    kafka_node_start "$(kafka_netns_dir "$n")" 512m "$(kafka_netns_ns "$n")"
  done
  wait_for 180 kafka-netns kafka_netns_ping
}

# The nodes stop; the namespaces and links stay (cheap, and `up` finds them).
kafka_netns_down() {
  local n; for n in $(kafka_netns_nodes); do kafka_node_stop "$(kafka_netns_dir "$n")" & done; wait
}

kafka_netns_reset() {
  kafka_netns_down
  rm -rf "$KAFKA_NETNS_HOME"
  kafka_netns_up
}

kafka_netns_which() { kafka_nodes_which kafka-netns "$(kafka_netns_bootstrap)" "$1"; }

kafka_netns_kill() {
  local n; n="$(kafka_netns_which "${1:?kafka-netns: kill which node?}")"
  kafka_node_stop "$(kafka_netns_dir "$n")" KILL
  echo "$n"
}

kafka_netns_partition() {
  local n; n="$(kafka_netns_which "${1:?kafka-netns: partition which node?}")"
  ip link set "$(kafka_netns_link "$n")" down
  echo "$n"
}

kafka_netns_heal() {  # [NODE]: that node's link up, else every one
  local n nodes; nodes="${1:-$(kafka_netns_nodes)}"
  for n in $nodes; do
    ip link show "$(kafka_netns_link "$n")" >/dev/null 2>&1 && ip link set "$(kafka_netns_link "$n")" up
  done
  return 0
}
