#!/usr/bin/env bash
# make down: remove the quickstart cluster and the operator stack. Volumes
# and secrets stay unless PURGE=1. On the Swarm DOCKER_HOST or DOCKER_CONTEXT
# names when set, as make up.
source "$(dirname "$0")/lib.sh"

if ! docker info >/dev/null 2>&1; then
  log "docker is not running: nothing to remove"
  exit 0
fi
# make up MANAGERS=N: the docker-in-docker nodes go, with their Swarm.
if [[ -n "$(local_docker; docker ps -aq --filter label=swarm-mqtt.dind=1)" ]]; then
  "$ROOT/hack/dind.sh" down
fi
# The operator API make up last used (a remote Swarm's first manager).
SERVER=$(sed -n 's/^export MQTTCTL_SERVER=//p' "$LOCAL/quickstart.env" 2>/dev/null || true)
SERVER=${SERVER:-https://127.0.0.1:$API_PORT}
if [[ -s "$LOCAL/api-token" && -s "$LOCAL/control-ca.crt" ]] && curl -fsS --cacert "$LOCAL/control-ca.crt" "$SERVER/readyz" >/dev/null 2>&1; then
  MQTTCTL_SERVER="$SERVER" MQTTCTL_TOKEN_FILE="$LOCAL/api-token" MQTTCTL_CA_FILE="$LOCAL/control-ca.crt" \
    "$ROOT/bin/mqttctl" delete quickstart 2>/dev/null || true
  # The operator removes the cluster's services; they leave the control
  # network before the stack (which owns it) goes.
  wait_for "the quickstart cluster's services to be removed" 60 bash -c \
    "! docker service ls -q --filter label=mqtt.swarm/cluster=quickstart | grep -q ."
fi
if docker stack ls --format '{{.Name}}' | grep -qx mqtt-monitoring; then
  log "removing stack mqtt-monitoring"
  docker stack rm mqtt-monitoring >/dev/null
  wait_for "the monitoring containers to stop" 60 bash -c "! docker ps -q --filter label=com.docker.stack.namespace=mqtt-monitoring | grep -q ."
fi
if docker stack ls --format '{{.Name}}' | grep -qx "$STACK"; then
  log "removing stack $STACK"
  if ! docker stack rm "$STACK" >/dev/null 2>"$LOCAL/stack-rm.err"; then
    # Other clusters' HAProxy services still use the control network: it
    # stays (the next make up reuses it).
    log "stack $STACK removed; kept: $(tr '\n' ' ' <"$LOCAL/stack-rm.err")"
  fi
  wait_for "the operator's containers to stop" 60 bash -c "! docker ps -q --filter label=com.docker.stack.namespace=$STACK | grep -q ."
fi
if [[ "${PURGE:-}" == "1" ]]; then
  log "purging volumes and secrets"
  wait_for "the operator volume to be free" 30 bash -c "docker volume rm ${STACK}_data >/dev/null 2>&1 || ! docker volume inspect ${STACK}_data >/dev/null 2>&1"
  for s in $(docker secret ls --filter label=swarm-mqtt.role=api-token --format '{{.Name}}') \
    $(docker secret ls --filter label=swarm-mqtt.role=encryption-key --format '{{.Name}}') \
    $(docker secret ls --filter label=swarm-mqtt.role=control-ca --format '{{.Name}}') \
    $(docker secret ls --filter label=swarm-mqtt.role=registry-auth --format '{{.Name}}'); do
    docker secret rm "$s" >/dev/null || true
  done
  docker volume rm mqtt-monitoring_prometheus mqtt-monitoring_influxdb >/dev/null 2>&1 || true
  rm -f "$LOCAL/api-token" "$LOCAL/encryption-key" "$LOCAL/control-ca.pem" "$LOCAL/control-ca.crt" "$LOCAL/prometheus-password" "$LOCAL/prometheus-web.yml" "$LOCAL/quickstart.env" \
    "$LOCAL/influxdb-password" "$LOCAL/influxdb-tls"
fi
# The CLI contexts make up wrote point at nothing now.
if [[ -x "$ROOT/bin/mqttctl" ]]; then
  for ctx in local dind swarm; do "$ROOT/bin/mqttctl" config delete-context "$ctx" >/dev/null 2>&1 || true; done
fi
