#!/usr/bin/env bash
# Run the end-to-end scenarios against the chart installed by up.sh, through a port-forward of the gateway.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need kubectl
PORT="${PORT:-18080}"
kubectl -n "$NAMESPACE" port-forward "service/$RELEASE-gateway" "$PORT:8080" >"$STATE/port-forward.log" 2>&1 &
forward=$!
trap 'kill "$forward" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.2
done
log "scenarios against http://127.0.0.1:$PORT"
cd "$REPO"
"$REPO/.venv/bin/python" e2e/kind/scenarios.py \
  --url "http://127.0.0.1:$PORT" --key "$(cat "$STATE/api-key")" --namespace e2e
