#!/usr/bin/env bash
# hack/screenshot.sh [OUT.png]: Prometheus graphs of the running quickstart
# cluster (connections, messages/s, certificate expiry), taken with
# Debian's headless Chromium, for the README (docs/prometheus.png). Needs
# make up MONITORING=1. It first runs a bounded load through HAProxy: a few
# held subscribers and two publishers at about 20 messages/s each, for
# DURATION seconds (default 150; 0: no load, the graphs as they are).
source "$(dirname "$0")/lib.sh"

set -a; source "$LOCAL/quickstart.env"; set +a
[[ -n "${PROMETHEUS_URL:-}" ]] || die "no Prometheus: run make up MONITORING=1 first"
command -v chromium >/dev/null 2>&1 || { log "installing chromium"; apt_install chromium; }
OUT=${1:-$ROOT/docs/prometheus.png}
DURATION=${DURATION:-150}
mkdir -p "$(dirname "$OUT")"

PASS=$(cat "$MQTT_PASSWORD_FILE")
pids=()
if ((DURATION > 0)); then
log "running a ${DURATION}s load through HAProxy ($MQTT_HOST:$MQTT_PORT)"
for i in 1 2 3 4; do
  timeout "$DURATION" mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" -u "$MQTT_USERNAME" -P "$PASS" -i "shot-sub-$i" -t 'demo/#' -q 1 >/dev/null 2>&1 &
  pids+=($!)
done
for i in 1 2; do
  (
    end=$((SECONDS + DURATION))
    while ((SECONDS < end)); do
      seq 1 20 | mosquitto_pub -h "$MQTT_HOST" -p "$MQTT_PORT" -u "$MQTT_USERNAME" -P "$PASS" -i "shot-pub-$i" -t demo/load -q 1 -l >/dev/null 2>&1
      sleep 1
    done
  ) &
  pids+=($!)
done
wait "${pids[@]}" || true
fi

enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }
q0='sum by (cluster) (haproxy_frontend_current_sessions)'
q1='sum by (cluster) (rate(mosquitto_publish_messages_received_total[1m]))'
q2='(min by (cluster, kind) (mqttoperator_certificate_expiration_timestamp_seconds) - time()) / 86400'
url="$PROMETHEUS_URL/classic/graph?g0.expr=$(enc "$q0")&g0.tab=0&g0.range_input=10m&g1.expr=$(enc "$q1")&g1.tab=0&g1.range_input=10m&g2.expr=$(enc "$q2")&g2.tab=0&g2.range_input=10m"
log "taking the screenshot: $OUT"
chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,2450 \
  --virtual-time-budget=15000 --screenshot="$OUT" "$url" >/dev/null 2>&1
[[ -s "$OUT" ]] || die "no screenshot written"
log "done: $OUT"
