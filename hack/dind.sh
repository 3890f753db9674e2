#!/usr/bin/env bash
# A multi-manager Swarm on this machine, each node a docker-in-docker
# container (see ../shared/ENVIRONMENT.md for why these flags: --privileged
# is refused here).
#
#   hack/dind.sh up [N]     N managers (default 3): nodes mqtt-m1..mN on the
#                           bridge network mqtt-dind, one Swarm, and an image
#                           registry the nodes pull from
#   hack/dind.sh down       remove the nodes, the registry, their data and
#                           the network
#   hack/dind.sh worker I   add node mqtt-mI as a worker
#   hack/dind.sh ip NODE    a node's address
#
# Like a real Swarm reached from a workstation: every node's Docker API
# listens on NODE:2376 with mutual TLS (a CA made here, in .local/dind-pki),
# and .local/dind.env holds DOCKER_HOST, DOCKER_TLS_VERIFY and
# DOCKER_CERT_PATH for the first node, and REGISTRY for the registry: a
# container of Debian's docker-registry 2.8 on the same network, over TLS
# (the nodes and this machine's Docker trust its CA) with a user and a
# generated password (.local/registry-password). make up pushes the images
# there, and every node pulls them, as a real Swarm's nodes do.
#
# Commands can also run on a node with: docker exec mqtt-m1 docker ...
source "$(dirname "$0")/lib.sh"
# The nodes are containers of this machine's Docker, whatever DOCKER_HOST
# the caller points at.
local_docker

NET=mqtt-dind
PREFIX=mqtt-m
# Fixed addresses: a node's address is its Swarm (and raft) address, and a
# restarted container must keep it.
SUBNET_PREFIX=${DIND_SUBNET_PREFIX:-172.29.213}
PKI=$LOCAL/dind-pki
REGISTRY_NAME=mqtt-dind-registry
REGISTRY_IP=$SUBNET_PREFIX.5
REGISTRY_ADDR=$REGISTRY_IP:5000
REGISTRY_USER=swarm-mqtt

node_ip() { docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$1"; }

nodes() { docker ps -a --filter "label=swarm-mqtt.dind=1" --format '{{.Names}}' | sort; }

start_node() {
  local name=$1
  if docker inspect "$name" >/dev/null 2>&1; then
    docker start "$name" >/dev/null
  else
    # A new node starts empty: data left by a node whose container is gone
    # (removed by hand) holds an old Swarm and an old operator store.
    rm -rf "/var/lib/$name"
    mkdir -p "/var/lib/$name"
    local ip=$SUBNET_PREFIX.$((10 + ${name#"$PREFIX"}))
    # The node's Docker API on :2376, clients checked against the CA.
    cert "$name" "IP:$ip,DNS:$name" serverAuth
    docker run -d --name "$name" --hostname "$name" --network "$NET" --ip "$ip" --label swarm-mqtt.dind=1 \
      --cap-add ALL --cap-drop SYS_RESOURCE \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
      --tmpfs /run --tmpfs /var/run \
      -v /sys/fs/cgroup:/sys/fs/cgroup -v "/var/lib/$name:/var/lib/docker" -v "$PKI/$name:/etc/docker/tls:ro" \
      swarm-mqtt/dind:local dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2376 \
      --tlsverify --tlscacert=/etc/docker/tls/ca.pem --tlscert=/etc/docker/tls/cert.pem --tlskey=/etc/docker/tls/key.pem >/dev/null
    # It pulls from the registry, trusting the registry's CA.
    docker exec -i "$name" sh -c "mkdir -p /etc/docker/certs.d/$REGISTRY_ADDR && cat >/etc/docker/certs.d/$REGISTRY_ADDR/ca.crt" <"$PKI/ca.pem"
  fi
  wait_for "dockerd on $name" 60 docker exec "$name" docker info
}

# ca: the CA of the nodes' Docker APIs and of the registry (made once).
ca() {
  [[ -s "$PKI/ca.pem" ]] && return
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/CN=swarm-mqtt dind CA" \
    -keyout "$PKI/ca-key.pem" -out "$PKI/ca.pem" 2>/dev/null
}

# cert NAME SANS USAGE: a key and certificate in $PKI/NAME (cert.pem,
# key.pem, and ca.pem beside them, as Docker's --tlsverify and
# DOCKER_CERT_PATH expect), for serverAuth or clientAuth.
cert() {
  local name=$1 sans=$2 usage=$3 dir=$PKI/$1
  [[ -s "$dir/cert.pem" ]] && return
  mkdir -p "$dir"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" -keyout "$dir/key.pem" -out "$dir/req.pem" 2>/dev/null
  local ext="extendedKeyUsage=$usage"
  [[ -n "$sans" ]] && ext="$ext
subjectAltName=$sans"
  openssl x509 -req -in "$dir/req.pem" -CA "$PKI/ca.pem" -CAkey "$PKI/ca-key.pem" -set_serial "0x$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" -days 825 \
    -extfile <(printf '%s\n' "$ext") -out "$dir/cert.pem" 2>/dev/null
  cp "$PKI/ca.pem" "$dir/ca.pem"
  rm -f "$dir/req.pem"
  chmod 600 "$dir/key.pem"
}

# registry: Debian's docker-registry on the nodes' network, over TLS, with
# one user (htpasswd, bcrypt) and its generated password; this machine's
# Docker trusts its CA and is logged in to it (to push).
registry() {
  local hash have pass=$LOCAL/registry-password
  hash=$( (docker image inspect -f '{{.Id}}' swarm-mqtt/debian-base:bookworm; cat "$ROOT/images/registry/Dockerfile" "$ROOT/images/registry/config.yml") | sha256sum | cut -c1-16)
  have=$(docker image inspect -f '{{index .Config.Labels "swarm-mqtt.input-hash"}}' swarm-mqtt/registry:local 2>/dev/null || true)
  if [[ "$have" != "$hash" ]]; then
    log "building image swarm-mqtt/registry:local"
    DOCKER_BUILDKIT=0 docker build -q --label "swarm-mqtt.input-hash=$hash" -t swarm-mqtt/registry:local "$ROOT/images/registry" >/dev/null
  fi
  cert registry "IP:$REGISTRY_IP,DNS:$REGISTRY_NAME" serverAuth
  if [[ ! -s "$pass" ]]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$pass")
  fi
  if [[ ! -s "$PKI/registry/htpasswd" || "$(sed -n 's/^# password: //p' "$PKI/registry/htpasswd")" != "$(sha256sum "$pass" | cut -c1-16)" ]]; then
    printf '# password: %s\n%s:%s\n' "$(sha256sum "$pass" | cut -c1-16)" "$REGISTRY_USER" "$("$ROOT/bin/mqtt-operator" bcrypt <"$pass")" >"$PKI/registry/htpasswd"
    docker rm -f "$REGISTRY_NAME" >/dev/null 2>&1 || true
  fi
  if ! docker inspect "$REGISTRY_NAME" >/dev/null 2>&1; then
    docker run -d --name "$REGISTRY_NAME" --network "$NET" --ip "$REGISTRY_IP" --restart unless-stopped \
      -v mqtt-dind-registry-data:/var/lib/docker-registry -v "$PKI/registry:/etc/docker/registry/tls:ro" \
      -e REGISTRY_HTTP_TLS_CERTIFICATE=/etc/docker/registry/tls/cert.pem -e REGISTRY_HTTP_TLS_KEY=/etc/docker/registry/tls/key.pem \
      -e REGISTRY_AUTH=htpasswd -e REGISTRY_AUTH_HTPASSWD_REALM=swarm-mqtt -e REGISTRY_AUTH_HTPASSWD_PATH=/etc/docker/registry/tls/htpasswd \
      swarm-mqtt/registry:local >/dev/null
  fi
  docker start "$REGISTRY_NAME" >/dev/null
  mkdir -p "/etc/docker/certs.d/$REGISTRY_ADDR"
  cp "$PKI/ca.pem" "/etc/docker/certs.d/$REGISTRY_ADDR/ca.crt"
  wait_for "the registry at $REGISTRY_ADDR (TLS, a login required)" 30 bash -c \
    "[[ \$(curl -s -o /dev/null -w '%{http_code}' --cacert $PKI/ca.pem https://$REGISTRY_ADDR/v2/) == 401 ]]"
  docker login -u "$REGISTRY_USER" --password-stdin "$REGISTRY_ADDR" <"$pass" >/dev/null 2>&1 ||
    die "docker login $REGISTRY_ADDR failed"
}

up() {
  local n=${1:-3} i first ip token
  "$ROOT/hack/docker.sh"
  "$ROOT/hack/images.sh"
  local hash
  hash=$( (docker image inspect -f '{{.Id}}' swarm-mqtt/debian-base:bookworm; cat "$ROOT/images/dind/Dockerfile") | sha256sum | cut -c1-16)
  if [[ "$(docker image inspect -f '{{index .Config.Labels "swarm-mqtt.input-hash"}}' swarm-mqtt/dind:local 2>/dev/null || true)" != "$hash" ]]; then
    log "building image swarm-mqtt/dind:local"
    DOCKER_BUILDKIT=0 docker build -q --label "swarm-mqtt.input-hash=$hash" -t swarm-mqtt/dind:local "$ROOT/images/dind" >/dev/null
  fi
  docker network inspect "$NET" >/dev/null 2>&1 || docker network create --subnet "$SUBNET_PREFIX.0/24" "$NET" >/dev/null
  ca
  # This machine's Docker CLI, as a client of the nodes' APIs.
  cert client "" clientAuth
  log "starting the registry and $n docker-in-docker nodes"
  registry
  for ((i = 1; i <= n; i++)); do start_node "$PREFIX$i" & done
  wait
  first=${PREFIX}1
  ip=$(node_ip "$first")
  if [[ "$(docker exec "$first" docker info -f '{{.Swarm.LocalNodeState}}')" != "active" ]]; then
    log "initialising the Swarm on $first ($ip)"
    docker exec "$first" docker swarm init --advertise-addr "$ip" >/dev/null
  fi
  token=$(docker exec "$first" docker swarm join-token -q manager)
  for ((i = 2; i <= n; i++)); do
    if [[ "$(docker exec "$PREFIX$i" docker info -f '{{.Swarm.LocalNodeState}}')" != "active" ]]; then
      docker exec "$PREFIX$i" docker swarm join --token "$token" --advertise-addr "$(node_ip "$PREFIX$i")" "$ip:2377" >/dev/null
    fi
  done
  cat >"$LOCAL/dind.env" <<ENV
# Written by hack/dind.sh up: the docker CLI against the docker-in-docker
# Swarm (its first node, mutual TLS), and the registry its nodes pull from.
export DOCKER_HOST=tcp://$ip:2376
export DOCKER_TLS_VERIFY=1
export DOCKER_CERT_PATH=$PKI/client
export REGISTRY=$REGISTRY_ADDR
export REGISTRY_USER=$REGISTRY_USER
export REGISTRY_PASSWORD_FILE=$LOCAL/registry-password
ENV
}

# worker I: start node mqtt-mI and join it as a worker (it pulls its
# tasks' images from the registry).
worker() {
  local name=$PREFIX$1 first=${PREFIX}1 token
  start_node "$name"
  if [[ "$(docker exec "$name" docker info -f '{{.Swarm.LocalNodeState}}')" != "active" ]]; then
    token=$(docker exec "$first" docker swarm join-token -q worker)
    docker exec "$name" docker swarm join --token "$token" --advertise-addr "$(node_ip "$name")" "$(node_ip "$first"):2377" >/dev/null
  fi
}

down() {
  local ns
  ns=$(nodes)
  if [[ -n "$ns" ]]; then
    log "removing the docker-in-docker nodes"
    # shellcheck disable=SC2086
    docker rm -f $ns >/dev/null
    for n in $ns; do rm -rf "/var/lib/$n"; done
  fi
  # The data of nodes whose containers were removed by hand.
  rm -rf /var/lib/"$PREFIX"[0-9]*
  if docker inspect "$REGISTRY_NAME" >/dev/null 2>&1; then
    docker rm -f "$REGISTRY_NAME" >/dev/null
  fi
  docker volume rm mqtt-dind-registry-data >/dev/null 2>&1 || true
  docker logout "$REGISTRY_ADDR" >/dev/null 2>&1 || true
  rm -rf "/etc/docker/certs.d/$REGISTRY_ADDR" "$PKI" "$LOCAL/dind.env" "$LOCAL/registry-password"
  docker network rm "$NET" >/dev/null 2>&1 || true
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  down) down ;;
  worker) worker "$2" ;;
  ip) node_ip "$2" ;;
  nodes) nodes ;;
  *) die "usage: hack/dind.sh up [N] | worker I | down | ip NODE | nodes" ;;
esac
