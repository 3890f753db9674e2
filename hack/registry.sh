#!/usr/bin/env bash
# A local image registry (Debian's docker-registry 2.8, images/registry), to
# try make up REGISTRY=... on one machine:
#
#   hack/registry.sh up     run it on 127.0.0.1:${REGISTRY_PORT:-5000} (a
#                           loopback registry: Docker pulls from it over
#                           plain HTTP, nothing leaves the machine)
#   hack/registry.sh down   remove it and its storage
#
# On a real Swarm, use a registry every node reaches, over TLS.
source "$(dirname "$0")/lib.sh"
local_docker

NAME=mqtt-registry
PORT=${REGISTRY_PORT:-5000}

up() {
  "$ROOT/hack/images.sh"
  local hash have
  hash=$( (docker image inspect -f '{{.Id}}' swarm-mqtt/debian-base:bookworm; cat "$ROOT/images/registry/Dockerfile" "$ROOT/images/registry/config.yml") | sha256sum | cut -c1-16)
  have=$(docker image inspect -f '{{index .Config.Labels "swarm-mqtt.input-hash"}}' swarm-mqtt/registry:local 2>/dev/null || true)
  if [[ "$have" != "$hash" ]]; then
    log "building image swarm-mqtt/registry:local"
    DOCKER_BUILDKIT=0 docker build -q --label "swarm-mqtt.input-hash=$hash" -t swarm-mqtt/registry:local "$ROOT/images/registry" >/dev/null
  fi
  if ! docker inspect "$NAME" >/dev/null 2>&1; then
    docker run -d --name "$NAME" --restart unless-stopped -p "127.0.0.1:$PORT:5000" \
      -v mqtt-registry-data:/var/lib/docker-registry swarm-mqtt/registry:local >/dev/null
  fi
  docker start "$NAME" >/dev/null
  wait_for "the registry on 127.0.0.1:$PORT" 30 curl -fsS "http://127.0.0.1:$PORT/v2/"
  echo "REGISTRY=127.0.0.1:$PORT"
}

down() {
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker volume rm mqtt-registry-data >/dev/null 2>&1 || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
