#!/usr/bin/env bash
# The control plane's HA tests on a real three-manager Swarm of
# docker-in-docker nodes (make up MANAGERS=3), then the nodes are removed.
source "$(dirname "$0")/lib.sh"

# tcpdump: the wire test captures the traffic between the nodes.
command -v tcpdump >/dev/null 2>&1 || apt_install tcpdump
MANAGERS=3 "$ROOT/hack/up.sh" >"$LOCAL/up-ha.log" 2>&1 || { cat "$LOCAL/up-ha.log"; exit 1; }
set -a; source "$LOCAL/quickstart.env"; set +a
cd "$ROOT"
status=0
# TestSoak runs short here (3 minutes of faults, seed 1 unless SOAK_SEED is
# set: repeated runs of this suite can vary it); make soak runs it long.
SOAK_SEED="${SOAK_SEED:-1}" SOAK_MINUTES="${SOAK_MINUTES:-3}" go test -count=1 -v -tags e2e_ha -timeout 30m ./test/ha/... || status=$?
if [[ "${KEEP:-}" != "1" ]]; then "$ROOT/hack/dind.sh" down; fi
exit $status
