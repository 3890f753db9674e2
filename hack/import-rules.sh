#!/usr/bin/env bash
# The import rules of the layout (README "Layout"), from go list: a
# violation fails `make lint` naming the package and the offending import.
#   - only reconcilers/swarm imports the Docker client;
#   - api imports nothing of the project;
#   - no reconciler reaches the controller (store, objects, HTTP server,
#     leader): reconcilers return results, the leader stores them;
#   - the objects layer does no Swarm I/O (no reconcilers/swarm);
#   - the in-container programs reach no controller package;
#   - the client package imports only api of the project;
#   - mqttctl imports only api and the client of the project, and links no
#     raft, Prometheus or Docker package.
set -euo pipefail
cd "$(dirname "$0")/.."
M=github.com/swarm-mqtt-operator/swarm-mqtt-operator
fail=0
bad() { echo "import rule broken: $*" >&2; fail=1; }

while read -r pkg imports; do
  for i in $imports; do
    if [[ $i == github.com/docker/docker/client && $pkg != "$M/reconcilers/swarm" ]]; then
      bad "$pkg imports $i (only $M/reconcilers/swarm may)"
    fi
  done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./...)

# deps PKG: PKG's transitive imports (test files excluded), one per line.
deps() { go list -deps "$1" | grep -vx "$(go list "$1")"; }

for d in $(deps ./api | grep "^$M/" || true); do
  bad "$M/api depends on $d (api imports nothing of the project)"
done
for p in $(go list ./reconcilers/... ./programs/...); do
  for d in $(deps "$p" | grep -E "^$M/controller(/|$)" || true); do
    bad "$p depends on $d (reconcilers and programs reach no controller package: they return results)"
  done
done
for d in $(deps ./controller/objects | grep -E "^$M/reconcilers/swarm$|docker/docker/client" || true); do
  bad "$M/controller/objects depends on $d (the objects layer does no Swarm I/O)"
done
for d in $(deps ./client | grep "^$M/" | grep -vx "$M/api" || true); do
  bad "$M/client depends on $d (only $M/api)"
done
for d in $(deps ./cmd/mqttctl | grep -E "^$M/|hashicorp/raft|prometheus|docker/docker" | grep -vxE "$M/(api|client)" || true); do
  bad "$M/cmd/mqttctl depends on $d (only $M/api and $M/client; no raft, Prometheus or Docker)"
done
exit $fail
