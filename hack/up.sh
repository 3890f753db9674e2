#!/usr/bin/env bash
# make up: Docker, a local Swarm, the images, the operator stack, then the
# quickstart cluster applied; prints how to connect and writes the same
# hints to .local/quickstart.env. Idempotent: safe to rerun.
#
# MANAGERS=N (N > 1): the Swarm is N docker-in-docker managers on this
# machine (hack/dind.sh), the operator runs on each of them and forms one
# raft cluster, and the quickstart cluster gets two load balancers.
# MONITORING=1: also the monitoring stack (charts/monitoring): Prometheus
# with the alert rules, and node-exporter on every node.
source "$(dirname "$0")/lib.sh"

MANAGERS="${MANAGERS:-1}"
# The Swarm to install on: the one DOCKER_HOST or DOCKER_CONTEXT names (a
# remote Swarm: its nodes pull the images from REGISTRY), else this
# machine's. Docker itself and the images are always this machine's.
REMOTE=
if [[ -n "${DOCKER_HOST:-}" || ( -n "${DOCKER_CONTEXT:-}" && "${DOCKER_CONTEXT:-}" != default ) ]]; then
  REMOTE=1
  ((MANAGERS == 1)) || die "MANAGERS=$MANAGERS makes docker-in-docker nodes on this machine; with DOCKER_HOST or DOCKER_CONTEXT set, make up installs on that Swarm (unset MANAGERS)"
fi
"$ROOT/hack/docker.sh"
"$ROOT/hack/images.sh"
# ld: the docker CLI against this machine's Docker (tag, push).
ld() { (local_docker; docker "$@"); }

DIND=
if ((MANAGERS > 1)); then
  # N docker-in-docker managers here, driven like a remote Swarm: through
  # their TLS-protected Docker API (DOCKER_HOST), pulling from a registry
  # container (REGISTRY) — .local/dind.env.
  "$ROOT/hack/dind.sh" up "$MANAGERS"
  # shellcheck source=/dev/null
  source "$LOCAL/dind.env"
  REMOTE=1 DIND=1
fi
D=(docker)
if [[ -n "$REMOTE" ]]; then
  docker info -f '{{.Swarm.ControlAvailable}}' 2>/dev/null | grep -qx true ||
    die "the Docker at ${DOCKER_HOST:-context $DOCKER_CONTEXT} is not a Swarm manager (or not reachable)"
  # Its nodes cannot see this machine's images: each must come from a
  # registry — pushed to REGISTRY, or named already published.
  if [[ -z "${REGISTRY:-}" ]]; then
    for img in "${OPERATOR_IMAGE:-swarm-mqtt/operator}" "${SYNC_IMAGE:-swarm-mqtt/sync-agent}" "${BROKER_IMAGE:-swarm-mqtt/mosquitto}" "${LB_IMAGE:-swarm-mqtt/haproxy}"; do
      if [[ "$img" == swarm-mqtt/* ]]; then
        die "a remote Swarm's nodes cannot see this machine's images ($img): set REGISTRY=host:port[/prefix], a registry every node reaches (make up pushes the images there), or name published images in OPERATOR_IMAGE, SYNC_IMAGE, BROKER_IMAGE and LB_IMAGE"
      fi
    done
  fi
  # The managers' addresses: the operator's API and raft on each.
  mapfile -t HOSTS < <(docker node ls --filter role=manager -q | xargs docker node inspect -f '{{.ManagerStatus.Addr}}' | sed 's/:[0-9]*$//' | sort -V)
  MANAGERS=${#HOSTS[@]}
else
  HOSTS=(127.0.0.1)
fi

# The API token: kept in .local/api-token for mqttctl, and in a Docker
# secret for the operator. Secrets are immutable and cannot be read back, so
# the secret's name carries the token's hash: a new token is a new secret.
TOKEN_FILE="$LOCAL/api-token"
if [[ ! -s "$TOKEN_FILE" ]]; then
  log "generating an API token in $TOKEN_FILE"
  (umask 077; head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1 >"$TOKEN_FILE")
fi
TOKEN_SECRET="mqtt-operator-token-$(sha256sum "$TOKEN_FILE" | cut -c1-12)"
if ! "${D[@]}" secret inspect "$TOKEN_SECRET" >/dev/null 2>&1; then
  "${D[@]}" secret create --label swarm-mqtt.role=api-token "$TOKEN_SECRET" - <"$TOKEN_FILE" >/dev/null
fi

# The key the operator encrypts stored credentials with: kept in
# .local/encryption-key (losing it loses the stored credentials), and in a
# Docker secret named after its hash.
KEY_FILE="$LOCAL/encryption-key"
if [[ ! -s "$KEY_FILE" ]]; then
  log "generating the storage encryption key in $KEY_FILE"
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KEY_FILE")
fi
KEY_SECRET="mqtt-operator-key-$(sha256sum "$KEY_FILE" | cut -c1-12)"
if ! "${D[@]}" secret inspect "$KEY_SECRET" >/dev/null 2>&1; then
  "${D[@]}" secret create --label swarm-mqtt.role=encryption-key "$KEY_SECRET" - <"$KEY_FILE" >/dev/null
fi

# The control-plane CA: each operator issues itself a certificate from it
# (raft over mutual TLS, the API over HTTPS). The bundle (certificate and
# key) stays in .local (mode 0600) and in a Docker secret only the operator
# service mounts; mqttctl and Prometheus verify with the certificate alone.
CA_BUNDLE="$LOCAL/control-ca.pem"
CA_CERT="$LOCAL/control-ca.crt"
"$ROOT/bin/mqtt-operator" control-ca --out "$CA_BUNDLE" --cert-out "$CA_CERT"
CA_SECRET="mqtt-operator-ca-$(sha256sum "$CA_BUNDLE" | cut -c1-12)"
if ! "${D[@]}" secret inspect "$CA_SECRET" >/dev/null 2>&1; then
  "${D[@]}" secret create --label swarm-mqtt.role=control-ca "$CA_SECRET" - <"$CA_BUNDLE" >/dev/null
fi

# Built here unless named (images already published: OPERATOR_IMAGE=...).
OPERATOR_IMAGE="${OPERATOR_IMAGE:-$(cat "$LOCAL/operator-image")}"
SYNC_IMAGE="${SYNC_IMAGE:-$(cat "$LOCAL/sync-image")}"
BROKER_IMAGE="${BROKER_IMAGE:-swarm-mqtt/mosquitto:local}"
LB_IMAGE="${LB_IMAGE:-swarm-mqtt/haproxy:local}"
RESOLVE=never
# REGISTRY=host:port[/prefix]: push the images built here to a registry and
# deploy with those references, so that every node pulls them (a real
# Swarm's nodes cannot see this machine's images). Each is pushed under a
# tag of its content (the operator's and the sync agent's hash, the input
# hash of the broker and load-balancer images), never a moving one, and the
# stack is deployed with --resolve-image always (pinned to the digest).
# REGISTRY_USER and REGISTRY_PASSWORD_FILE: the registry's credentials
# (docker login here, to push; the stack is deployed --with-registry-auth,
# and the operator gets them in a Docker secret for the services it makes).
REGISTRY_AUTH='{}'
if [[ -n "${REGISTRY:-}" && -n "${REGISTRY_USER:-}" ]]; then
  [[ -s "${REGISTRY_PASSWORD_FILE:-}" ]] || die "REGISTRY_USER is set: REGISTRY_PASSWORD_FILE must name a file holding the password"
  ld login -u "$REGISTRY_USER" --password-stdin "${REGISTRY%%/*}" <"$REGISTRY_PASSWORD_FILE" >/dev/null 2>&1 ||
    die "docker login ${REGISTRY%%/*} as $REGISTRY_USER failed"
  json_string() { sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\n'; }
  REGISTRY_AUTH=$(printf '{"username":"%s","password":"%s","serveraddress":"%s"}' \
    "$(printf %s "$REGISTRY_USER" | json_string)" "$(json_string <"$REGISTRY_PASSWORD_FILE")" "${REGISTRY%%/*}")
fi
# Named after a hash keyed with the storage key (a local secret): a hash
# of the password alone, visible in docker secret ls, could be guessed
# against for a weak password.
REGISTRY_AUTH_SECRET="mqtt-operator-registry-$( (cat "$KEY_FILE"; printf %s "$REGISTRY_AUTH") | sha256sum | cut -c1-12)"
if ! "${D[@]}" secret inspect "$REGISTRY_AUTH_SECRET" >/dev/null 2>&1; then
  printf %s "$REGISTRY_AUTH" | "${D[@]}" secret create --label swarm-mqtt.role=registry-auth "$REGISTRY_AUTH_SECRET" - >/dev/null
fi
if [[ -n "${REGISTRY:-}" ]]; then
  push_image() {
    local src=$1 repo tag dst
    repo=${src%:*} tag=${src##*:}
    if [[ "$tag" == local ]]; then
      tag=$(ld image inspect -f '{{index .Config.Labels "swarm-mqtt.input-hash"}}' "$src")
    fi
    dst="$REGISTRY/$repo:$tag"
    ld tag "$src" "$dst"
    ld push -q "$dst" >/dev/null
    echo "$dst"
  }
  log "pushing the images to $REGISTRY"
  [[ "$OPERATOR_IMAGE" == swarm-mqtt/* ]] && OPERATOR_IMAGE=$(push_image "$OPERATOR_IMAGE")
  [[ "$SYNC_IMAGE" == swarm-mqtt/* ]] && SYNC_IMAGE=$(push_image "$SYNC_IMAGE")
  [[ "$BROKER_IMAGE" == swarm-mqtt/* ]] && BROKER_IMAGE=$(push_image "$BROKER_IMAGE")
  [[ "$LB_IMAGE" == swarm-mqtt/* ]] && LB_IMAGE=$(push_image "$LB_IMAGE")
  RESOLVE=always
fi
log "deploying the operator stack ($STACK) on $MANAGERS manager(s)"
op_version() { "${D[@]}" service inspect -f '{{.Version.Index}}' "${STACK}_operator" 2>/dev/null || echo none; }
before=$(op_version)
TOKEN_SECRET="$TOKEN_SECRET" KEY_SECRET="$KEY_SECRET" CA_SECRET="$CA_SECRET" REGISTRY_AUTH_SECRET="$REGISTRY_AUTH_SECRET" \
  API_PORT="$API_PORT" OPERATOR_IMAGE="$OPERATOR_IMAGE" SYNC_IMAGE="$SYNC_IMAGE" BROKER_IMAGE="$BROKER_IMAGE" LB_IMAGE="$LB_IMAGE" \
  docker stack deploy --with-registry-auth --resolve-image "$RESOLVE" -c "$ROOT/charts/operator/stack.yml" "$STACK" >/dev/null

# Old token and CA secrets no longer used by the service.
for s in $("${D[@]}" secret ls --filter label=swarm-mqtt.role=api-token --format '{{.Name}}'); do
  [[ "$s" == "$TOKEN_SECRET" ]] || "${D[@]}" secret rm "$s" >/dev/null 2>&1 || true
done
for s in $("${D[@]}" secret ls --filter label=swarm-mqtt.role=control-ca --format '{{.Name}}'); do
  [[ "$s" == "$CA_SECRET" ]] || "${D[@]}" secret rm "$s" >/dev/null 2>&1 || true
done
for s in $("${D[@]}" secret ls --filter label=swarm-mqtt.role=registry-auth --format '{{.Name}}'); do
  [[ "$s" == "$REGISTRY_AUTH_SECRET" ]] || "${D[@]}" secret rm "$s" >/dev/null 2>&1 || true
done

# A new image replaces the running operator: wait until only the new one
# runs, on every manager.
wait_for "the operator on $OPERATOR_IMAGE on every manager" 180 bash -c \
  "[[ \"\$(${D[*]} service ps ${STACK}_operator --filter desired-state=running --format '{{.Image}} {{.CurrentState}}' | grep -c '^$OPERATOR_IMAGE Running')\" == $MANAGERS ]]"

SERVERS=()
for h in "${HOSTS[@]}"; do SERVERS+=("https://$h:$API_PORT"); done
SERVER="${SERVERS[0]}"
export MQTTCTL_SERVER="$SERVER" MQTTCTL_TOKEN_FILE="$TOKEN_FILE" MQTTCTL_CA_FILE="$CA_CERT"
MQTTCTL="$ROOT/bin/mqttctl"
log "waiting for the operator API at $SERVER"
wait_for "the operator API to be ready" 90 curl -fsS --cacert "$CA_CERT" "$SERVER/readyz"
# The service is updated in place on a rerun: wait until the running task
# accepts this token (an old task may still answer for a moment).
wait_for "the operator to accept the token" 90 "$MQTTCTL" get
if ((MANAGERS > 1)); then
  wait_for "a raft cluster of $MANAGERS voters" 120 bash -c \
    "[[ \$(curl -fsS --cacert $CA_CERT $SERVER/v1/status/peers | grep -c '\"suffrage\": \"Voter\"') == $MANAGERS ]]"
fi
# A rerun that changed the operator updates it one manager at a time, each
# watched 30 s and the whole rolled back on a failure (the stack's
# update_config): wait for the roll to end, and fail if Swarm rolled it
# back — the previous version would still be running.
if [[ "$before" != none && "$(op_version)" != "$before" ]]; then
  roll_state() { "${D[@]}" service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "${STACK}_operator"; }
  roll_ended() { case "$(roll_state)" in updating | rollback_started | paused | rollback_paused) return 1 ;; esac; }
  log "waiting for the operator's rolling update to end"
  wait_for "the operator's rolling update to end" 600 roll_ended
  case "$(roll_state)" in rollback_*)
    die "Swarm rolled the operator update back ($("${D[@]}" service inspect -f '{{.UpdateStatus.Message}}' "${STACK}_operator")): the previous version still runs; see docker service ps ${STACK}_operator" ;;
  esac
fi

CLUSTER=quickstart
SPEC="$ROOT/examples/quickstart.yaml"
if [[ -n "$REMOTE" ]]; then
  # A certificate valid for every manager's address, and with more than
  # one manager, two load balancers (host-mode ports: one per node).
  SPEC="$LOCAL/quickstart-$MANAGERS.yaml"
  ips=$(printf '"%s", ' "${HOSTS[@]}")
  lbs=1
  if ((MANAGERS > 1)); then lbs=2; fi
  sed -e "s/    replicas: 1/    replicas: $lbs/" -e "s/ipAddresses: \[\"127.0.0.1\"\]/ipAddresses: [${ips}\"127.0.0.1\"]/" \
    "$ROOT/examples/quickstart.yaml" >"$SPEC"
fi
log "applying $(basename "$SPEC")"
"$MQTTCTL" apply -f "$SPEC"
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
spec=$("$MQTTCTL" get "$CLUSTER" -o yaml)
MQTT_PORT=$(sed -n 's/^ *mqtt: //p' <<<"$spec" | head -1)
MQTTS_PORT=$(sed -n 's/^ *mqtts: //p' <<<"$spec" | head -1)
if [[ -n "$REMOTE" ]]; then
  # The first node that runs a load balancer (status.endpoints).
  MQTT_HOST=$(sed -n 's|^ *- mqtt://\([^:]*\):.*|\1|p' <<<"$spec" | head -1)
  if [[ -n "$DIND" ]]; then
    WHERE="on a $MANAGERS-manager docker-in-docker Swarm"
  else
    WHERE="on the Swarm at ${DOCKER_HOST:-context $DOCKER_CONTEXT} ($MANAGERS manager(s))"
  fi
  HOSTNOTE="certificate valid for every manager's address"
else
  MQTT_HOST=localhost
  WHERE="on this one-node Swarm"
  HOSTNOTE="certificate valid for localhost and 127.0.0.1"
fi

if ! command -v mosquitto_sub >/dev/null 2>&1; then
  log "installing mosquitto-clients (for the connection hints below)"
  apt_install mosquitto-clients
fi

PROM_NOTE=""
PROMETHEUS_URL=""
if [[ "${MONITORING:-}" == "1" ]]; then
  # Basic auth on Prometheus: user prometheus, a generated password kept
  # in .local/prometheus-password.
  PROM_PASS_FILE="$LOCAL/prometheus-password"
  if [[ ! -s "$PROM_PASS_FILE" ]]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PROM_PASS_FILE")
  fi
  # The chart, the control-plane CA certificate (Prometheus scrapes the
  # operators over HTTPS and verifies them with it), the web configuration
  # (the password's bcrypt hash) and the password (it scrapes itself).
  MON_DIR=$(mktemp -d)
  cp -r "$ROOT/charts/monitoring/." "$MON_DIR/"
  cp "$CA_CERT" "$MON_DIR/control-ca.crt"
  cp "$PROM_PASS_FILE" "$MON_DIR/prometheus-password"
  # The hash changes with every run (a new salt): reuse it while the
  # password is the same.
  WEB="$LOCAL/prometheus-web.yml"
  if [[ ! -s "$WEB" || "$(sed -n 's/^# password: //p' "$WEB")" != "$(sha256sum "$PROM_PASS_FILE" | cut -c1-16)" ]]; then
    printf '# password: %s\nbasic_auth_users:\n  prometheus: %s\n' "$(sha256sum "$PROM_PASS_FILE" | cut -c1-16)" \
      "$("$ROOT/bin/mqtt-operator" bcrypt <"$PROM_PASS_FILE")" >"$WEB"
  fi
  cp "$WEB" "$MON_DIR/web.yml"
  # InfluxDB (the long-term store): its certificate from the control-plane
  # CA (kept while valid for 30 more days) and the password Prometheus
  # writes with.
  INFLUX_PASS_FILE="$LOCAL/influxdb-password"
  if [[ ! -s "$INFLUX_PASS_FILE" ]]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$INFLUX_PASS_FILE")
  fi
  "$ROOT/bin/mqtt-operator" monitoring-cert --ca-file "$CA_BUNDLE" --name influxdb --out "$LOCAL/influxdb-tls"
  cp "$INFLUX_PASS_FILE" "$MON_DIR/influxdb-password"
  cp "$LOCAL/influxdb-tls" "$MON_DIR/influxdb-tls"
  CONFIG_HASH=$(cat "$MON_DIR/prometheus.yml" "$MON_DIR/rules.yml" "$MON_DIR/alerts.yml" "$MON_DIR/control-ca.crt" "$MON_DIR/web.yml" "$MON_DIR/prometheus-password" \
    "$MON_DIR/influxdb-password" "$MON_DIR/influxdb-tls" | sha256sum | cut -c1-12)
  FILES=(-c stack.yml)
  if [[ -n "${MONITORING_PORT:-}" ]]; then FILES+=(-c publish.yml); fi
  log "deploying the monitoring stack (mqtt-monitoring)"
  PROMETHEUS_IMAGE=swarm-mqtt/prometheus:local NODE_EXPORTER_IMAGE=swarm-mqtt/node-exporter:local INFLUXDB_IMAGE=swarm-mqtt/influxdb:local
  if [[ -n "${REGISTRY:-}" ]]; then
    PROMETHEUS_IMAGE=$(push_image "$PROMETHEUS_IMAGE")
    NODE_EXPORTER_IMAGE=$(push_image "$NODE_EXPORTER_IMAGE")
    INFLUXDB_IMAGE=$(push_image "$INFLUXDB_IMAGE")
  fi
  (cd "$MON_DIR" && CONFIG_HASH="$CONFIG_HASH" MONITORING_PORT="${MONITORING_PORT:-}" PROMETHEUS_IMAGE="$PROMETHEUS_IMAGE" NODE_EXPORTER_IMAGE="$NODE_EXPORTER_IMAGE" \
    INFLUXDB_IMAGE="$INFLUXDB_IMAGE" OPERATOR_IMAGE="$OPERATOR_IMAGE" \
    docker stack deploy --with-registry-auth --resolve-image "$RESOLVE" "${FILES[@]}" mqtt-monitoring >/dev/null)
  PROM_HOST=${HOSTS[0]}
  rm -rf "$MON_DIR"
  # Old config and secret versions no longer used.
  for c in $("${D[@]}" config ls --filter name=mqtt-monitoring- --format '{{.Name}}'); do
    [[ "$c" == *"-$CONFIG_HASH" ]] || "${D[@]}" config rm "$c" >/dev/null 2>&1 || true
  done
  for c in $("${D[@]}" secret ls --filter name=mqtt-monitoring- --format '{{.Name}}'); do
    [[ "$c" == *"-$CONFIG_HASH" ]] || "${D[@]}" secret rm "$c" >/dev/null 2>&1 || true
  done
  if [[ -n "${MONITORING_PORT:-}" ]]; then
    PROMETHEUS_URL="http://prometheus:$(cat "$PROM_PASS_FILE")@$PROM_HOST:$MONITORING_PORT"
    wait_for "Prometheus at http://$PROM_HOST:$MONITORING_PORT" 120 curl -fsS "$PROMETHEUS_URL/-/ready"
    PROM_NOTE="
  Prometheus:     http://$PROM_HOST:$MONITORING_PORT (user prometheus, password in $PROM_PASS_FILE)
  Grafana:        import charts/monitoring/grafana-dashboard.json"
  else
    PROM_NOTE="
  Prometheus:     not published (make up MONITORING=1 MONITORING_PORT=9090 publishes it, behind basic auth:
                  user prometheus, password in $PROM_PASS_FILE)"
  fi
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
export MQTTCTL_SERVERS=$(IFS=,; echo "${SERVERS[*]}")
export MQTTCTL_TOKEN_FILE=$TOKEN_FILE
export MQTTCTL_CA_FILE=$CA_CERT
export MANAGERS=$MANAGERS
export PROMETHEUS_URL=${PROMETHEUS_URL:-}
ENV
# It may hold Prometheus's password (in PROMETHEUS_URL).
chmod 600 "$LOCAL/quickstart.env"

# The CLI's context (like a kubeconfig's): this Swarm's operator API, its
# CA and the token file, made current, so bin/mqttctl works in any shell.
CONTEXT=local
if [[ -n "$DIND" ]]; then
  CONTEXT=dind
elif [[ -n "$REMOTE" ]]; then
  CONTEXT=swarm
fi
"$MQTTCTL" config set-context "$CONTEXT" --server "$(IFS=,; echo "${SERVERS[*]}")" --ca-file "$CA_CERT" \
  --token-file "$TOKEN_FILE" --use >/dev/null

cat <<MSG

The '$CLUSTER' MQTT cluster is Ready $WHERE: 3 Mosquitto brokers
behind HAProxy, plain MQTT on $MQTT_PORT and MQTTS on $MQTTS_PORT (TLS ends at HAProxy).

  Host:           $MQTT_HOST ($HOSTNOTE)
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

  Operator API:   $SERVER (HTTPS, CA $CA_CERT; token in $TOKEN_FILE; every manager: ${SERVERS[*]})
  Status:         bin/mqttctl describe $CLUSTER   (mqttctl uses its context '$CONTEXT': bin/mqttctl config get-contexts)$PROM_NOTE

The same settings are in .local/quickstart.env (. .local/quickstart.env).
MSG
