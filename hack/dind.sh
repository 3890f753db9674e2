#!/usr/bin/env bash
# A multi-manager Swarm on this machine, each node a docker-in-docker
# container (see ../shared/ENVIRONMENT.md for why these flags: --privileged
# is refused here).
#
#   hack/dind.sh up [N]     N managers (default 3): nodes mqtt-m1..mN on the
#                           bridge network mqtt-dind, one Swarm, the local
#                           images loaded into every node
#   hack/dind.sh down       remove the nodes, their data and the network
#   hack/dind.sh worker I   add node mqtt-mI as a worker
#   hack/dind.sh ip NODE    a node's address
#
# Commands run on a node with: docker exec mqtt-m1 docker ...
source "$(dirname "$0")/lib.sh"

NET=mqtt-dind
PREFIX=mqtt-m
# Fixed addresses: a node's address is its Swarm (and raft) address, and a
# restarted container must keep it.
SUBNET_PREFIX=${DIND_SUBNET_PREFIX:-172.29.213}
IMAGES=(swarm-mqtt/mosquitto:local swarm-mqtt/haproxy:local swarm-mqtt/sync:local)

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
    docker run -d --name "$name" --hostname "$name" --network "$NET" --ip "$SUBNET_PREFIX.$((10 + ${name#"$PREFIX"}))" --label swarm-mqtt.dind=1 \
      --cap-add ALL --cap-drop SYS_RESOURCE \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
      --tmpfs /run --tmpfs /var/run \
      -v /sys/fs/cgroup:/sys/fs/cgroup -v "/var/lib/$name:/var/lib/docker" \
      swarm-mqtt/dind:local >/dev/null
  fi
  wait_for "dockerd on $name" 60 docker exec "$name" docker info
}

# load_images NODE IMAGE...: copy local images into a node, skipping those
# it already has (same image id).
load_images() {
  local node=$1; shift
  local img have want
  for img in "$@"; do
    want=$(docker image inspect -f '{{.Id}}' "$img")
    have=$(docker exec "$node" docker image inspect -f '{{.Id}}' "$img" 2>/dev/null || true)
    if [[ "$have" != "$want" ]]; then
      docker save "$img" | docker exec -i "$node" docker load -q >/dev/null
    fi
  done
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
  log "starting $n docker-in-docker nodes"
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
  log "loading the images into every node"
  local op sy
  op=$(cat "$LOCAL/operator-image")
  sy=$(cat "$LOCAL/sync-image")
  local extra=()
  if [[ "${MONITORING:-}" == "1" ]]; then extra=(swarm-mqtt/prometheus:local swarm-mqtt/node-exporter:local); fi
  for ((i = 1; i <= n; i++)); do load_images "$PREFIX$i" "$op" "$sy" "${IMAGES[@]}" "${extra[@]}" & done
  wait
}

# worker I: start node mqtt-mI, load the images and join it as a worker.
worker() {
  local name=$PREFIX$1 first=${PREFIX}1 token
  start_node "$name"
  load_images "$name" "$(cat "$LOCAL/sync-image")" "${IMAGES[@]}"
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
