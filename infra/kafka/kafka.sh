#!/usr/bin/env bash
# Local Apache Kafka (KRaft, one broker+controller on 127.0.0.1:9092), assembled from Maven Central.
#   infra/kafka/kafka.sh start|stop|status|wait|reset
# Idempotent: start on a running broker and stop on a stopped one are no-ops.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${KAFKA_STATE_DIR:-$here/.state}"          # git-ignored
libs="$here/target/libs"
pidfile="$state/kafka.pid"
port="${KAFKA_PORT:-9092}"
cport="${KAFKA_CONTROLLER_PORT:-9093}"
props="$state/server.properties"
# the JVM options of Apache Kafka's own launcher (bin/kafka-server-start.sh, bin/kafka-run-class.sh): G1 aiming
# at 20 ms pauses (its default aim is 200 ms), a fixed 1 GiB heap; the GC log (logs/kafkaServer-gc.log, as the
# launcher's -loggc) shows the broker's pauses, which end up in every latency measured through it
heap_opts="${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}"
jvm_opts="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"

need_libs() {
  if [ ! -f "$libs/.complete" ]; then
    echo "kafka: fetching Apache Kafka jars from Maven Central (first use)..." >&2
    mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies
    touch "$libs/.complete"
  fi
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

java_run() { java -Xms256m -Xmx1g -Dlog4j.configuration="file:$here/log4j.properties" \
  -Dkafka.logs.dir="$state/logs" -cp "$libs/*" "$@"; }

wait_ready() {
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && grep -q "started (kafka.server.KafkaRaftServer)" "$state/logs/server.log" 2>/dev/null; do
    if ! running; then echo "kafka: broker exited; see $state/logs/server.log" >&2; tail -20 "$state/logs/server.log" >&2 || true; return 1; fi
    [ $SECONDS -lt $deadline ] || { echo "kafka: not ready after ${KAFKA_START_TIMEOUT:-90}s" >&2; return 1; }
    sleep 0.5
  done
}

start() {
  if running; then echo "kafka: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0; fi
  need_libs
  mkdir -p "$state/data" "$state/logs"
  sed -e "s#9092#$port#g; s#9093#$cport#g" "$here/server.properties" > "$props"
  echo "log.dirs=$state/data" >> "$props"
  if [ ! -f "$state/data/meta.properties" ]; then
    java_run kafka.tools.StorageTool format -t "$(java_run kafka.tools.StorageTool random-uuid)" -c "$props" --ignore-formatted >/dev/null
  fi
  : > "$state/logs/server.log"
  # shellcheck disable=SC2086  # the option strings are word lists
  nohup java $heap_opts $jvm_opts -Xlog:gc:file="$state/logs/kafkaServer-gc.log":time,uptime:filecount=5,filesize=20M \
    -Dlog4j.configuration="file:$here/log4j.properties" -Dkafka.logs.dir="$state/logs" -cp "$libs/*" \
    kafka.Kafka "$props" > "$state/logs/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  wait_ready
  echo "kafka: ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"
}

stop() {
  if ! running; then rm -f "$pidfile"; echo "kafka: not running"; return 0; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"; echo "kafka: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "kafka: running (pid $(cat "$pidfile"))"; else echo "kafka: stopped"; exit 3; fi ;;
  wait) wait_ready ;;
  reset) stop; rm -rf "$state"; echo "kafka: data removed" ;;
  *) echo "usage: $0 start|stop|status|wait|reset" >&2; exit 2 ;;
esac
