#!/usr/bin/env bash
# Build every image locally (no registry is reachable), skipping an image
# whose inputs have not changed: each image is labelled with the hash of its
# inputs and rebuilt only when that hash differs.
source "$(dirname "$0")/lib.sh"
local_docker
export DOCKER_BUILDKIT=0

# build_image NAME CONTEXT_DIR HASH
build_image() {
  local name=$1 ctx=$2 hash=$3 have
  have=$(docker image inspect -f '{{index .Config.Labels "swarm-mqtt.input-hash"}}' "$name" 2>/dev/null || true)
  if [[ "$have" == "$hash" ]]; then
    log "image $name is up to date"
    return
  fi
  log "building image $name"
  docker build -q --label "swarm-mqtt.input-hash=$hash" -t "$name" "$ctx" >/dev/null
}

# The operator: the static binary on scratch.
make -s -C "$ROOT" build >/dev/null
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$ROOT/Dockerfile" "$ROOT/bin/mqtt-operator" "$ctx/"
hash=$(cat "$ctx/Dockerfile" "$ctx/mqtt-operator" | sha256sum | cut -c1-16)
build_image swarm-mqtt/operator:local "$ctx" "$hash"
# A tag per content: the stack names it, so a new binary is a new service
# spec and Swarm replaces the running operator (the :local tag alone would
# look unchanged to Swarm).
docker tag swarm-mqtt/operator:local "swarm-mqtt/operator:$hash"
echo "swarm-mqtt/operator:$hash" >"$LOCAL/operator-image"

# A Debian base made here with debootstrap (docker pull cannot reach a
# registry), then Mosquitto, HAProxy and the sync image on it.
BASE=swarm-mqtt/debian-base:bookworm
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null 2>&1 || {
    log "installing debootstrap"
    apt_install debootstrap
  }
  log "building $BASE with debootstrap (about 30 s)"
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$rootfs" >/dev/null
  tar -C "$rootfs" -c . | docker import - "$BASE" >/dev/null
  rm -rf "$rootfs"
fi
base_id=$(docker image inspect -f '{{.Id}}' "$BASE")
for img in mosquitto haproxy sync prometheus node-exporter influxdb; do
  hash=$( (echo "$base_id"; cd "$ROOT/images/$img" && find . -type f | LC_ALL=C sort | xargs cat) | sha256sum | cut -c1-16)
  build_image "swarm-mqtt/$img:local" "$ROOT/images/$img" "$hash"
done

# The sync agent: the sync image (lsyncd, rsync) plus the operator binary,
# which is the agent, the rsync daemon's pre-transfer check and (under the
# name mqtt-sync-rsync) the rsync lsyncd runs. Tagged per content, like the
# operator's.
cp "$ROOT/bin/mqtt-operator" "$ctx/"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM swarm-mqtt/sync:local
COPY mqtt-operator /usr/local/bin/mqtt-operator
RUN ln -s mqtt-operator /usr/local/bin/mqtt-sync-rsync
ENTRYPOINT []
DOCKERFILE
hash=$( (docker image inspect -f '{{.Id}}' swarm-mqtt/sync:local; cat "$ctx/Dockerfile" "$ctx/mqtt-operator") | sha256sum | cut -c1-16)
build_image swarm-mqtt/sync-agent:local "$ctx" "$hash"
docker tag swarm-mqtt/sync-agent:local "swarm-mqtt/sync-agent:$hash"
echo "swarm-mqtt/sync-agent:$hash" >"$LOCAL/sync-image"
