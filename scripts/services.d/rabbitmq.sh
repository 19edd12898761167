# RabbitMQ, one node (amqp://127.0.0.1:5672), the tests in their own virtual host.
RABBITMQ_PORT=5672
RABBITMQ_VHOST=mqkit-test

rabbitmq_ping() { rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1 && port_open $RABBITMQ_PORT; }

rabbitmq_up() {
  apt_install rabbitmq-server amqp-tools
  # Rewritten on every `up` so that a machine set up by an older version of this script gets
  # the current settings.
  cat > /etc/rabbitmq/rabbitmq.conf <<CONF
# written by mqkit scripts/services: loopback only
listeners.tcp.default = 127.0.0.1:$RABBITMQ_PORT
loopback_users.guest = true
CONF
  # RabbitMQ's start script switches to the rabbitmq user with su, which resets the soft limit on
  # open files to 1024; with more durable queues than that, 3.10 hangs while recovering them at
  # boot. This file is sourced by the start script after su, so the limit is raised here.
  cat > /etc/rabbitmq/rabbitmq-env.conf <<CONF
# written by mqkit scripts/services: loopback only (epmd and distribution too)
ulimit -S -n "\$(ulimit -H -n)" 2>/dev/null || true
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=127.0.0.1
ERL_EPMD_ADDRESS=127.0.0.1
DIST_PORT=25672
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CONF
  if ! port_open $RABBITMQ_PORT; then
    rabbitmq_epmd
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_for 120 rabbitmq port_open $RABBITMQ_PORT
    wait_for 60 rabbitmq rabbitmqctl -q await_startup
  fi
  rabbitmqctl -q list_vhosts | grep -qx "$RABBITMQ_VHOST" || rabbitmq_vhost
}

# Erlang's port mapper listens on every interface unless started on loopback first.
rabbitmq_epmd() { pgrep -x epmd >/dev/null || epmd -address 127.0.0.1 -daemon; }

# The tests use their own virtual host, so that `reset` can drop every queue and exchange they
# left in one step without touching anything else on the server.
rabbitmq_vhost() {  # rabbitmq_vhost [rabbitmqctl's -n NODE]
  rabbitmqctl "$@" -q add_vhost "$RABBITMQ_VHOST" >/dev/null
  rabbitmqctl "$@" -q set_permissions -p "$RABBITMQ_VHOST" guest ".*" ".*" ".*" >/dev/null
}

rabbitmq_reset() {
  rabbitmq_up
  rabbitmqctl -q delete_vhost "$RABBITMQ_VHOST" >/dev/null 2>&1 || true
  rabbitmq_vhost
}

rabbitmq_down() {
  if port_open $RABBITMQ_PORT; then rabbitmqctl -q stop >/dev/null 2>&1 || true; fi
  local deadline=$((SECONDS + 30))
  while port_open $RABBITMQ_PORT && ((SECONDS < deadline)); do sleep 0.3; done
}

# By its pid file: the cluster's nodes run the same beam with the node name nowhere on the
# command line.
rabbitmq_kill() { rabbitmq_kill_pid /var/lib/rabbitmq/mnesia/rabbit@localhost.pid; }

rabbitmq_kill_pid() {
  local pid; pid="$(cat "$1" 2>/dev/null || true)"
  [[ -z "$pid" ]] || kill -9 "$pid" 2>/dev/null || true
  while [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

