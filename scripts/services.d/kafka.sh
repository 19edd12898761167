# Apache Kafka in KRaft mode from its jars on Maven Central (scripts/kafka/pom.xml), fetched
# with Maven into ~/.m2 and copied to $KAFKA_HOME/libs, run with the machine's Java 17.
# This file: the jars, a node's configuration and process, and the single node on
# 127.0.0.1:9092 (broker and controller in one process). kafka-cluster.sh runs three.
KAFKA_PORT=9092 KAFKA_CONTROLLER_PORT=9093
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/kafka/pom.xml")"
KAFKA_HOME="$STATE/kafka-$KAFKA_VERSION"
KAFKA_CLUSTER_ID="bXFraXQtdGVzdC1jbHVzdA"   # fixed, so a restart finds its own storage

kafka_metadata() { kcat -b "$1" -L -m 5 "${@:2}" 2>/dev/null; }

kafka_fetch() {
  # The marker holds the pom's checksum: a changed pom fetches again.
  local want; want="$(sha256sum "$HERE/kafka/pom.xml" | cut -d' ' -f1)"
  [[ "$(cat "$KAFKA_HOME/libs/.complete" 2>/dev/null)" == "$want" ]] && return 0
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Kafka's jars"
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central"
  rm -rf "$KAFKA_HOME/libs"; mkdir -p "$KAFKA_HOME/libs"
  mvn -q -B -Dstyle.color=never -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_HOME/libs" -DincludeScope=runtime >/dev/null
  echo "$want" > "$KAFKA_HOME/libs/.complete"
}

kafka_tools() {
  apt_install kafkacat 2>/dev/null || apt_install kcat
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  kafka_fetch
}

# kafka_node_config DIR NODE_ID PORT CONTROLLER_PORT VOTERS REPLICAS MIN_ISR [HOST]
# Kafka logs WARN and up; KAFKA_EXTRA_LOG4J adds log4j2 lines to a node's configuration when
# it starts, to see more of one part, e.g. the transaction coordinator:
#   KAFKA_EXTRA_LOG4J=$'logger.t.name = kafka.coordinator.transaction\nlogger.t.level = INFO'
kafka_node_config() {
  local dir=$1 id=$2 port=$3 controller=$4 voters=$5 replicas=$6 min_isr=$7 host=${8:-127.0.0.1}
  mkdir -p "$dir/data" "$dir/logs"
  cat > "$dir/server.properties" <<CONF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller
advertised.listeners=PLAINTEXT://$host:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$replicas
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=10485760
replica.fetch.max.bytes=10485760
CONF
  cat > "$dir/log4j2.properties" <<CONF
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
${KAFKA_EXTRA_LOG4J:-}
CONF
}

# kafka_java DIR HEAP CLASS ARGS...: a JVM on the jars, logging to DIR/logs.
kafka_java() {
  local dir=$1 heap=$2; shift 2
  java -Xms128m -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$KAFKA_HOME/libs/*" "$@"
}

# kafka_node_start DIR HEAP [NETNS]: format the node's storage once, then run it in the
# background (in network namespace NETNS if given).
kafka_node_start() {
  local dir=$1 heap=$2 in=()
  [[ -n "${3:-}" ]] && in=(ip netns exec "$3")
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    kafka_java "$dir" 256m kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" \
      -c "$dir/server.properties" >"$dir/logs/format.log" 2>&1 ||
      die "formatting Kafka storage in $dir failed: $(tail -3 "$dir/logs/format.log")"
  fi
  nohup "${in[@]}" bash -c "$(declare -f kafka_java); KAFKA_HOME='$KAFKA_HOME' kafka_java '$dir' '$heap' kafka.Kafka '$dir/server.properties'" \
    >"$dir/logs/stdout.log" 2>&1 &
}

kafka_node_pids() { pgrep -f "kafka.Kafka $1/server.properties" || true; }

# kafka_node_stop DIR [SIGNAL]: TERM waits up to 60 s for a clean shutdown, then KILL.
kafka_node_stop() {
  local dir=$1 signal=${2:-TERM} pids; pids="$(kafka_node_pids "$dir")"
  [[ -n "$pids" ]] || return 0
  kill "-$signal" $pids 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while [[ -n "$(kafka_node_pids "$dir")" ]] && ((SECONDS < deadline)); do sleep 0.2; done
  pids="$(kafka_node_pids "$dir")"; [[ -z "$pids" ]] || kill -9 $pids 2>/dev/null || true
}

# -- the single node ----------------------------------------------------------------------------

kafka_ping() { port_open $KAFKA_PORT && kafka_metadata 127.0.0.1:$KAFKA_PORT >/dev/null; }

kafka_up() {
  kafka_tools
  kafka_ping && return 0
  kafka_node_config "$KAFKA_HOME" 1 $KAFKA_PORT $KAFKA_CONTROLLER_PORT \
    "1@127.0.0.1:$KAFKA_CONTROLLER_PORT" 1 1
  kafka_node_start "$KAFKA_HOME" 1g
  wait_for 120 kafka kafka_ping
}

kafka_down() { kafka_node_stop "$KAFKA_HOME"; }

# Every test makes its own topics; thousands of them slow Kafka's start and hold its file handles.
kafka_reset() {
  kafka_down
  rm -rf "$KAFKA_HOME/data"
  kafka_up
}

kafka_kill() { kafka_node_stop "$KAFKA_HOME" KILL; }
