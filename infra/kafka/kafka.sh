#!/usr/bin/env bash
# Local Apache Kafka (KRaft on loopback), assembled from Maven Central.
#   infra/kafka/kafka.sh start|stop|status|wait|reset|bootstrap
# One broker+controller on 127.0.0.1:9092 by default. KAFKA_BROKERS=3 (`make up BROKERS=3`) runs the
# 3-node cluster instead (each node broker+controller, replication factor 3, min.insync.replicas=2) on
# 127.0.0.1:9192-9194, with per-node faults for tests: kill-node N (SIGKILL), stop-node N, start-node N.
# KAFKA_SECURE=1 runs the secure broker instead (SASL_SSL + SCRAM-SHA-512, TLS from a local CA, ACLs; see
# server-secure.properties and docs/adr/0014): its own data (.state-secure) and ports (127.0.0.1:9392, controller
# 9393; the 3-node cluster 9492-9494), credentials made on first use in KAFKA_SECRETS_DIR (infra/kafka/secrets,
# git-ignored) by secrets.sh;
# `env PRINCIPAL` prints the path of a principal's KAFKA_* file (admin, intake, ..., source-<id>, subscriber-<id>);
# `acls` (the secure broker's only) applies the ACLs again (KAFKA_APPLY_ACLS=0: start without applying them).
# KAFKA_PROXIED=REAL:ADVERTISED (the single PLAINTEXT broker only; tests' network partitions) adds a PLAINTEXT
# listener on 127.0.0.1:REAL advertised as 127.0.0.1:ADVERTISED, where a test's proxy forwards to it.
# KAFKA_EXTRA_PROPERTIES (the single broker only; tests' misconfigured brokers): lines added to its server.properties,
# overriding the same keys before them.
# Idempotent: start on a running broker only adds what a registry change brought (the secure one: new principals'
# credentials and the ACLs, as `acls` does); stop on a stopped one is a no-op.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
secure="${KAFKA_SECURE:-0}"
if [ "$secure" = 1 ]; then
  state="${KAFKA_STATE_DIR:-$here/.state-secure}"  # git-ignored
  port="${KAFKA_PORT:-9392}"
  cport="${KAFKA_CONTROLLER_PORT:-9393}"
else
  state="${KAFKA_STATE_DIR:-$here/.state}"          # git-ignored
  port="${KAFKA_PORT:-9092}"
  cport="${KAFKA_CONTROLLER_PORT:-9093}"
fi
secrets="${KAFKA_SECRETS_DIR:-$here/secrets}"
libs="$here/target/libs"
pidfile="$state/kafka.pid"
props="$state/server.properties"
# the JVM options of Apache Kafka's own launcher (bin/kafka-server-start.sh, bin/kafka-run-class.sh): G1 aiming
# at 20 ms pauses (its default aim is 200 ms), a fixed 1 GiB heap; the GC log (logs/kafkaServer-gc.log, as the
# launcher's -loggc) shows the broker's pauses, which end up in every latency measured through it
heap_opts="${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}"
jvm_opts="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"

need_libs() {
  if [ ! -f "$libs/.complete" ]; then
    echo "kafka: fetching Apache Kafka jars from Maven Central (first use)..." >&2
    rm -rf "$libs"  # afresh, as `make setup` does: no jar of an earlier version or an interrupted copy left behind
    mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies
    touch "$libs/.complete"
  fi
}

broker_runs() {  # $1: a pid file, $2: the properties file its JVM was started with. A live pid alone may be another
  # process's (a pid file kept past a reboot, its pid reused): `make down` killed it, `start` said "already running"
  local pid cmd
  [ -f "$1" ] && pid="$(cat "$1")" && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ -d /proc ] || return 0  # no /proc to ask (not Linux): the pid alone, as before
  cmd="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *"kafka.Kafka $2"* ]]
}

running() { broker_runs "$pidfile" "$props"; }

other_running() {  # a hint when the other kind of broker runs (make demo and make up start the secure one)
  local other=.state-secure kind=secure how="KAFKA_SECURE=1 " make="make down"  # make's SECURE is 1 by default
  if [ "$secure" = 1 ]; then other=.state; kind=PLAINTEXT; how=""; make="make down SECURE=0"; fi
  if [ -z "${KAFKA_STATE_DIR:-}" ] && broker_runs "$here/$other/kafka.pid" "$here/$other/server.properties"; then
    echo " (the $kind broker is: ${how}infra/kafka/kafka.sh stop with the same KAFKA_PORT, or $make, stops it)"
  fi
}

java_run() { java -Xms256m -Xmx1g -Dlog4j.configuration="file:$here/log4j.properties" \
  -Dkafka.logs.dir="$state/logs" -cp "$libs/*" "$@"; }

ports_free() {  # $1: the settings that move them; then the ports. A port in use: one line naming it and its holder
  local what=$1 taken; shift
  for taken in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$taken") 2>/dev/null; then
      echo "kafka: 127.0.0.1:$taken is already in use$(port_holder "$taken"); $what move this broker (every later" \
        "kafka.sh and make call needs the same)" >&2
      return 1
    fi
  done
}

port_holder() {  # " by <process> (pid N)" when ss can tell, else nothing
  local who
  who="$(ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -1)" || true
  [ -n "$who" ] && echo " by ${who#users:((}" | sed -E 's/"([^"]*)",pid=([0-9]+)/\1 (pid \2)/'
  return 0
}

wait_ready() {
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && grep -q "started (kafka.server.KafkaRaftServer)" "$state/logs/server.log" 2>/dev/null; do
    # its pid alone: just started here, and until nohup has exec'd, its command line is still this script's
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then  # its first errors say why (a port taken, a bad config)
      echo "kafka: broker exited; see $state/logs/server.log. Its first errors:" >&2
      grep -m 5 -A 1 -E "ERROR|FATAL" "$state/logs/server.log" >&2 || tail -20 "$state/logs/stdout.log" >&2 || true
      return 1
    fi
    [ $SECONDS -lt $deadline ] || { echo "kafka: not ready after ${KAFKA_START_TIMEOUT:-90}s" >&2; return 1; }
    sleep 0.5
  done
}

start() {
  if running; then  # a registry change since it started (a subscriber, a source, a role's right) is applied now
    if [ "$secure" = 1 ]; then refresh_credentials; apply_acls "127.0.0.1:$port"; fi
    echo "kafka: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0
  fi
  ports_free "KAFKA_PORT and KAFKA_CONTROLLER_PORT" "$port" "$cport" ${KAFKA_PROXIED:+"${KAFKA_PROXIED%%:*}"} || return 1
  need_libs
  mkdir -p "$state/data" "$state/logs"
  local scram=()
  if [ "$secure" = 1 ]; then
    secure_properties "$here/server.properties" "$port" "$cport" > "$props"
    [ -f "$state/data/meta.properties" ] || scram_options
  else
    sed -e "s#9092#$port#g; s#9093#$cport#g" "$here/server.properties" > "$props"
    proxied_listener
  fi
  echo "log.dirs=$state/data" >> "$props"
  [ -z "${KAFKA_EXTRA_PROPERTIES:-}" ] || printf '%s\n' "$KAFKA_EXTRA_PROPERTIES" >> "$props"  # the last one wins
  if [ ! -f "$state/data/meta.properties" ]; then
    java_run kafka.tools.StorageTool format -t "$(java_run kafka.tools.StorageTool random-uuid)" -c "$props" \
      --ignore-formatted ${scram[@]+"${scram[@]}"} >/dev/null
  fi
  : > "$state/logs/server.log"
  # shellcheck disable=SC2086  # the option strings are word lists
  nohup java $heap_opts $jvm_opts -Xlog:gc:file="$state/logs/kafkaServer-gc.log":time,uptime:filecount=5,filesize=20M \
    -Dlog4j.configuration="file:$here/log4j.properties" -Dkafka.logs.dir="$state/logs" -cp "$libs/*" \
    kafka.Kafka "$props" > "$state/logs/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  wait_ready
  if [ "$secure" = 1 ]; then apply_acls "127.0.0.1:$port"; echo "kafka: SASL_SSL, ACLs applied; credentials in $secrets"; fi
  echo "kafka: ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"
}

proxied_listener() {  # KAFKA_PROXIED=REAL:ADVERTISED (tests' network partitions, tests/chaos/netproxy.py): one more
  # PLAINTEXT listener on REAL, advertised on ADVERTISED, where a proxy forwards to REAL; unset: none
  [ -n "${KAFKA_PROXIED:-}" ] || return 0
  local real="${KAFKA_PROXIED%%:*}" advertised="${KAFKA_PROXIED##*:}"
  sed -i -e "s#^listeners=.*#&,PROXIED://127.0.0.1:$real#" \
    -e "s#^advertised\.listeners=.*#&,PROXIED://127.0.0.1:$advertised#" \
    -e "s#^listener\.security\.protocol\.map=.*#&,PROXIED:PLAINTEXT#" "$props"
}

stop() {
  if ! running; then rm -f "$pidfile"; echo "kafka: not running$(other_running)"; return 0; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"; echo "kafka: stopped"
}

# --- the secure broker ---------------------------------------------------------------------------------
secure_properties() {  # $1 (server or cluster properties) without its listeners, then the overlay for ports $2, $3
  "$here/secrets.sh" "$secrets" "127.0.0.1:$port" >/dev/null
  umask 077
  grep -v -E '^(listeners|advertised\.listeners|listener\.security\.protocol\.map|inter\.broker\.listener\.name)=' "$1" \
    | sed -e "s#9093#$3#g"
  sed -e "s#@PORT@#$2#g; s#@CPORT@#$3#g; s#@SECRETS@#$secrets#g" "$here/server-secure.properties"
}

scram_options() {  # sets scram: every principal's SCRAM credential, put into the metadata at format time (KIP-900)
  local p
  scram=()
  for p in $(cat "$secrets/principals.txt"); do  # written by secrets.sh (secure_properties runs it first)
    scram+=(--add-scram "SCRAM-SHA-512=[name=$p,password=$(cat "$secrets/$p.password")]")
  done
}

refresh_credentials() {  # the files of principals the registry added since (secrets.sh keeps what exists)
  "$here/secrets.sh" "$secrets" "127.0.0.1:$port" >/dev/null
}

apply_acls() {  # on bootstrap $1: the users a registry change added, and every ACL of services.common.acls (as admin)
  [ "${KAFKA_APPLY_ACLS:-1}" = 1 ] || return 0  # brokers a test starts of its own, used as admin only
  (cd "$root" && set -a && . "$secrets/admin.env" && KAFKA_BOOTSTRAP="$1" && set +a \
    && "${PYTHON:-$root/.venv/bin/python}" -m services.common.acls --apply --secrets "$secrets" >/dev/null)
}

# --- the 3-node cluster ------------------------------------------------------------------------------
cluster_state="$state/cluster"
if [ "$secure" = 1 ]; then                          # nodes listen on cluster_port + 0..2
  cluster_port="${KAFKA_CLUSTER_PORT:-9492}"; cluster_cport="${KAFKA_CLUSTER_CONTROLLER_PORT:-9592}"
else
  cluster_port="${KAFKA_CLUSTER_PORT:-9192}"; cluster_cport="${KAFKA_CLUSTER_CONTROLLER_PORT:-9292}"
fi
nodes=(1 2 3)

tool() {  # Kafka's tool class $1 (its bin/kafka-*.sh) on bootstrap $2, as admin on the secure broker
  local class=$1 bootstrap=$2; shift 2
  need_libs
  local config=()
  if [ "$secure" = 1 ]; then
    local env="$secrets/admin.env" props="$secrets/admin.java.properties"
    [ -f "$env" ] || { echo "kafka: no $env (start first)" >&2; return 1; }
    (umask 077; (set -a; . "$env"; set +a
      printf 'security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nssl.truststore.type=PEM\n'
      printf 'ssl.truststore.location=%s\n' "$KAFKA_SSL_CAFILE"
      printf 'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";\n' \
        "$KAFKA_SASL_USERNAME" "$KAFKA_SASL_PASSWORD") > "$props")
    config=(--command-config "$props")
  fi
  java -Xmx256m -Dlog4j.configuration="file:$here/log4j.properties" -Dkafka.logs.dir="$state/logs" -cp "$libs/*" \
    "$class" --bootstrap-server "$bootstrap" ${config[@]+"${config[@]}"} "$@"
}

groups() { tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@"; }  # kafka-consumer-groups.sh
quorum() { tool org.apache.kafka.tools.MetadataQuorumCommand "$@"; }  # kafka-metadata-quorum.sh: the active controller

node_dir() { echo "$cluster_state/node$1"; }
node_port() { echo $((cluster_port + $1 - 1)); }
node_running() { broker_runs "$(node_dir "$1")/kafka.pid" "$(node_dir "$1")/server.properties"; }
cluster_bootstrap() { local out=(); for n in "${nodes[@]}"; do out+=("127.0.0.1:$(node_port "$n")"); done; (IFS=,; echo "${out[*]}"); }

node_start() {
  local n=$1 dir; dir="$(node_dir "$n")"
  if node_running "$n"; then return 0; fi
  mkdir -p "$dir/data" "$dir/logs"
  local voters="" i
  for i in "${nodes[@]}"; do voters+="${voters:+,}$i@127.0.0.1:$((cluster_cport + i - 1))"; done
  local template="$here/cluster.properties" scram=()
  if [ "$secure" = 1 ]; then  # the same listeners and credentials as the single secure broker
    template="$dir/cluster.properties"
    secure_properties "$here/cluster.properties" @PORT@ @CPORT@ > "$template"
    [ -f "$dir/data/meta.properties" ] || scram_options
  fi
  sed -e "s#@ID@#$n#; s#@PORT@#$(node_port "$n")#g; s#@CPORT@#$((cluster_cport + n - 1))#; s#@VOTERS@#$voters#" \
    "$template" > "$dir/server.properties"
  echo "log.dirs=$dir/data" >> "$dir/server.properties"
  if [ ! -f "$dir/data/meta.properties" ]; then
    [ -f "$cluster_state/cluster.id" ] || java_run kafka.tools.StorageTool random-uuid > "$cluster_state/cluster.id"
    java_run kafka.tools.StorageTool format -t "$(cat "$cluster_state/cluster.id")" -c "$dir/server.properties" \
      --ignore-formatted ${scram[@]+"${scram[@]}"} >/dev/null
  fi
  : > "$dir/logs/server.log"
  # shellcheck disable=SC2086
  nohup java $heap_opts $jvm_opts -Dlog4j.configuration="file:$here/log4j.properties" -Dkafka.logs.dir="$dir/logs" \
    -cp "$libs/*" kafka.Kafka "$dir/server.properties" > "$dir/logs/stdout.log" 2>&1 &
  echo $! > "$dir/kafka.pid"
}

node_wait() {
  local n=$1 dir deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120})); dir="$(node_dir "$n")"
  until (exec 3<>"/dev/tcp/127.0.0.1/$(node_port "$n")") 2>/dev/null \
      && grep -q "started (kafka.server.KafkaRaftServer)" "$dir/logs/server.log" 2>/dev/null; do
    if ! kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then  # its first errors say why, as the single broker's do
      echo "kafka: node $n exited; see $dir/logs/server.log. Its first errors:" >&2
      grep -m 5 -A 1 -E "ERROR|FATAL" "$dir/logs/server.log" >&2 || tail -20 "$dir/logs/stdout.log" >&2 || true
      return 1
    fi
    [ $SECONDS -lt $deadline ] || { echo "kafka: node $n not ready" >&2; return 1; }
    sleep 0.5
  done
}

node_stop() {  # $2 = signal (TERM: clean shutdown, KILL: a crash)
  local n=$1 sig=${2:-TERM} f; f="$(node_dir "$n")/kafka.pid"
  if ! node_running "$n"; then rm -f "$f"; return 0; fi
  local pid; pid="$(cat "$f")"
  kill "-$sig" "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

valid_node() { case "${1:-}" in 1|2|3) return 0 ;; *) echo "kafka: node must be 1, 2 or 3 (got '${1:-}')" >&2; exit 2 ;; esac; }

cluster() {
  case "$1" in kill-node|stop-node|start-node) valid_node "${2:-}" ;; esac
  case "$1" in
    start)
      for n in "${nodes[@]}"; do  # before anything starts, as the single broker's
        node_running "$n" || ports_free "KAFKA_CLUSTER_PORT and KAFKA_CLUSTER_CONTROLLER_PORT" "$(node_port "$n")" \
          "$((cluster_cport + n - 1))" || exit 1
      done
      need_libs; mkdir -p "$cluster_state"
      for n in "${nodes[@]}"; do node_start "$n"; done
      for n in "${nodes[@]}"; do node_wait "$n"; done
      [ "$secure" != 1 ] || apply_acls "$(cluster_bootstrap)"
      echo "kafka: 3-node cluster ready on $(cluster_bootstrap)" ;;
    stop) for n in "${nodes[@]}"; do node_stop "$n"; done; echo "kafka: cluster stopped" ;;
    status)
      local up=0; for n in "${nodes[@]}"; do node_running "$n" && up=$((up + 1)); done
      echo "kafka: cluster $up/3 nodes running"; [ "$up" -eq 3 ] || exit 3 ;;
    wait) for n in "${nodes[@]}"; do node_wait "$n"; done ;;
    reset)  # its data goes: killed, not shut down (the last node's clean shutdown waits 30 s for a lost quorum)
      for n in "${nodes[@]}"; do node_stop "$n" KILL; done; rm -rf "$cluster_state"; echo "kafka: cluster data removed" ;;
    bootstrap) cluster_bootstrap ;;
    groups) shift; groups "$(cluster_bootstrap)" "$@" ;;
    quorum) shift; quorum "$(cluster_bootstrap)" "$@" ;;
    kill-node) node_stop "$2" KILL; echo "kafka: node $2 killed" ;;
    stop-node) node_stop "$2"; echo "kafka: node $2 stopped" ;;
    start-node) need_libs; node_start "$2"; node_wait "$2"; echo "kafka: node $2 ready on 127.0.0.1:$(node_port "$2")" ;;
    *) echo "usage: KAFKA_BROKERS=3 $0 start|stop|status|wait|reset|bootstrap|groups ARGS|quorum ARGS|kill-node N|stop-node N|start-node N" >&2
       exit 2 ;;
  esac
}

if [ "${KAFKA_BROKERS:-1}" = 3 ]; then cluster "${1:-}" "${@:2}"; exit $?; fi
[ "${KAFKA_BROKERS:-1}" = 1 ] || { echo "kafka: KAFKA_BROKERS must be 1 or 3" >&2; exit 2; }

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "kafka: running (pid $(cat "$pidfile"))"; else echo "kafka: stopped"; exit 3; fi ;;
  wait) wait_ready ;;
  reset) stop; rm -rf "$state"; echo "kafka: data removed" ;;
  bootstrap) echo "127.0.0.1:$port" ;;
  acls) [ "$secure" = 1 ] || { echo "kafka: only the secure broker has users and ACLs: KAFKA_SECURE=1 $0 acls" >&2; exit 2; }
        refresh_credentials; apply_acls "127.0.0.1:$port" ;;
  env) f="$secrets/${2:?usage: $0 env PRINCIPAL}.env"; [ -f "$f" ] || { echo "kafka: no $f (start first)" >&2; exit 1; }
       echo "$f" ;;
  groups) shift; groups "127.0.0.1:$port" "$@" ;;
  quorum) shift; quorum "127.0.0.1:$port" "$@" ;;
  *) echo "usage: $0 start|stop|status|wait|reset|bootstrap|acls|env PRINCIPAL|groups ARGS|quorum ARGS" >&2; exit 2 ;;
esac
