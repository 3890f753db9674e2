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
TOKEN_SECRET="$TOKEN_SECRET" API_PORT="$API_PORT" OPERATOR_IMAGE="$(cat "$LOCAL/operator-image")" \
  BROKER_IMAGE="${BROKER_IMAGE:-swarm-mqtt/mosquitto:local}" LB_IMAGE="${LB_IMAGE:-swarm-mqtt/haproxy:local}" \
  docker stack deploy --resolve-image never -c "$ROOT/charts/operator/stack.yml" "$STACK" >/dev/null

# Old token secrets no longer used by the service.
for s in $(docker secret ls --filter label=swarm-mqtt.role=api-token --format '{{.Name}}'); do
  [[ "$s" == "$TOKEN_SECRET" ]] || docker secret rm "$s" >/dev/null 2>&1 || true
done

# A new image replaces the running operator: wait until only the new one runs.
OPERATOR_IMAGE="$(cat "$LOCAL/operator-image")"
wait_for "the operator task on $OPERATOR_IMAGE" 120 bash -c \
  "[[ \"\$(docker ps --filter label=com.docker.swarm.service.name=${STACK}_operator --format '{{.Image}}')\" == '$OPERATOR_IMAGE' ]]"

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
log "waiting for the '$CLUSTER' cluster to be Ready"
"$MQTTCTL" wait "$CLUSTER" --for=condition=Ready --timeout="${READY_TIMEOUT:-180s}"

# What a client needs: the CA that signed the MQTTS certificate and the
# generated user's password (kept private in .local).
CAFILE="$LOCAL/$CLUSTER-ca.crt"
PASSFILE="$LOCAL/$CLUSTER-password"
"$MQTTCTL" get ca "$CLUSTER" >"$CAFILE"
creds=$("$MQTTCTL" get credentials "$CLUSTER")
USERNAME=$(sed -n 's/^username: //p' <<<"$creds")
(umask 077; sed -n 's/^password: //p' <<<"$creds" >"$PASSFILE")
MQTT_HOST=localhost
spec=$("$MQTTCTL" get "$CLUSTER" -o yaml)
MQTT_PORT=$(sed -n 's/^ *mqtt: //p' <<<"$spec")
MQTTS_PORT=$(sed -n 's/^ *mqtts: //p' <<<"$spec")

if ! command -v mosquitto_sub >/dev/null 2>&1; then
  log "installing mosquitto-clients (for the connection hints below)"
  apt_install mosquitto-clients
fi

cat >"$LOCAL/quickstart.env" <<ENV
# Written by make up. Source it: . .local/quickstart.env
export CLUSTER=$CLUSTER
export MQTT_HOST=$MQTT_HOST
export MQTT_PORT=$MQTT_PORT
export MQTTS_PORT=$MQTTS_PORT
export MQTT_CAFILE=$CAFILE
export MQTT_USERNAME=$USERNAME
export MQTT_PASSWORD_FILE=$PASSFILE
export MQTTCTL_SERVER=$SERVER
export MQTTCTL_TOKEN_FILE=$TOKEN_FILE
ENV

cat <<MSG

The '$CLUSTER' MQTT cluster is Ready on this one-node Swarm: 3 Mosquitto brokers
behind HAProxy, plain MQTT on $MQTT_PORT and MQTTS on $MQTTS_PORT (TLS ends at HAProxy).

  Host:           $MQTT_HOST (certificate valid for localhost and 127.0.0.1)
  MQTT:           $MQTT_HOST:$MQTT_PORT
  MQTTS:          $MQTT_HOST:$MQTTS_PORT, CA file $CAFILE
  User:           $USERNAME, password in $PASSFILE

  Subscribe (MQTTS):
    mosquitto_sub -h $MQTT_HOST -p $MQTTS_PORT --cafile $CAFILE -u $USERNAME -P "\$(cat $PASSFILE)" -t 'demo/#' -v
  Publish (MQTTS):
    mosquitto_pub -h $MQTT_HOST -p $MQTTS_PORT --cafile $CAFILE -u $USERNAME -P "\$(cat $PASSFILE)" -t demo/hello -m hi
  Plain MQTT:
    mosquitto_sub -h $MQTT_HOST -p $MQTT_PORT -u $USERNAME -P "\$(cat $PASSFILE)" -t 'demo/#' -v
    mosquitto_pub -h $MQTT_HOST -p $MQTT_PORT -u $USERNAME -P "\$(cat $PASSFILE)" -t demo/hello -m hi

  Operator API:   $SERVER (token in $TOKEN_FILE)
  Status:         bin/mqttctl describe $CLUSTER

The same settings are in .local/quickstart.env (. .local/quickstart.env).
MSG
