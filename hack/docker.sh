#!/usr/bin/env bash
# Install Docker from Debian's packages when missing, start dockerd when not
# running, and make this machine a one-node Swarm when it is not in one.
# Idempotent: safe to rerun.
source "$(dirname "$0")/lib.sh"
local_docker

if ! command -v curl >/dev/null 2>&1; then
  log "installing curl"
  apt_install curl
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io from Debian"
  apt_install docker.io
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  # No systemd here: run it in the background, logging to /var/log.
  rm -f /var/run/docker.pid
  setsid nohup /usr/sbin/dockerd >/var/log/dockerd.log 2>&1 </dev/null &
  wait_for "dockerd" 60 docker info
fi

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [[ "$state" != "active" ]]; then
  log "initialising a one-node Swarm"
  docker swarm init --advertise-addr "${SWARM_ADVERTISE_ADDR:-127.0.0.1}" >/dev/null
fi
