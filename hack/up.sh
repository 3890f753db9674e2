#!/usr/bin/env bash
# make up: Docker, a local one-node Swarm, the images, the operator stack,
# then the quickstart cluster applied; prints how to connect and writes the
# same hints to .local/quickstart.env. Idempotent: safe to rerun.
source "$(dirname "$0")/lib.sh"

"$ROOT/hack/docker.sh"
"$ROOT/hack/images.sh"

# The API token: kept in .local/api-token for mqttctl, and in a Docker
# secret for the operator. Secrets are immutable and cannot be read back, so
# the secret's name carries the token's hash: a new token is a new secret.
TOKEN_FILE="$LOCAL/api-token"
if [[ ! -s "$TOKEN_FILE" ]]; then
  log "generating an API token in $TOKEN_FILE"
  (umask 077; head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1 >"$TOKEN_FILE")
fi
TOKEN_SECRET="mqtt-operator-token-$(sha256sum "$TOKEN_FILE" | cut -c1-12)"
if ! docker secret inspect "$TOKEN_SECRET" >/dev/null 2>&1; then
  docker secret create --label swarm-mqtt.role=api-token "$TOKEN_SECRET" "$TOKEN_FILE" >/dev/null
fi

log "deploying the operator stack ($STACK)"
TOKEN_SECRET="$TOKEN_SECRET" API_PORT="$API_PORT" \
  BROKER_IMAGE="${BROKER_IMAGE:-swarm-mqtt/mosquitto:local}" LB_IMAGE="${LB_IMAGE:-swarm-mqtt/haproxy:local}" \
  docker stack deploy --resolve-image never -c "$ROOT/charts/operator/stack.yml" "$STACK" >/dev/null

# Old token secrets no longer used by the service.
for s in $(docker secret ls --filter label=swarm-mqtt.role=api-token --format '{{.Name}}'); do
  [[ "$s" == "$TOKEN_SECRET" ]] || docker secret rm "$s" >/dev/null 2>&1 || true
done

SERVER="http://127.0.0.1:$API_PORT"
export MQTTCTL_SERVER="$SERVER" MQTTCTL_TOKEN_FILE="$TOKEN_FILE"
MQTTCTL="$ROOT/bin/mqttctl"
log "waiting for the operator API at $SERVER"
wait_for "the operator API to be ready" 90 curl -fsS "$SERVER/readyz"
# The service is updated in place on a rerun: wait until the running task
# accepts this token (an old task may still answer for a moment).
wait_for "the operator to accept the token" 90 "$MQTTCTL" get

log "applying examples/quickstart.yaml"
"$MQTTCTL" apply -f "$ROOT/examples/quickstart.yaml"
CLUSTER=quickstart

cat >"$LOCAL/quickstart.env" <<ENV
# Written by make up. Source it: . .local/quickstart.env
CLUSTER=$CLUSTER
MQTTCTL_SERVER=$SERVER
MQTTCTL_TOKEN_FILE=$TOKEN_FILE
ENV

cat <<MSG

The operator is running on this one-node Swarm and stores the '$CLUSTER' cluster.

  Operator API:   $SERVER   (token in $TOKEN_FILE)
  Try:            . .local/quickstart.env && bin/mqttctl get -o wide && bin/mqttctl describe $CLUSTER

This is step 1 of the plan: the API, the raft store and mqttctl. The brokers,
the load balancer and the connection hints (MQTT_HOST, MQTT_PORT, MQTTS_PORT,
the CA file and credentials) arrive with step 2 (issue 4).
MSG
