#!/usr/bin/env bash
# make soak SEED=... MINUTES=... [FAULTS=kind,kind]: the chaos soak
# (test/ha TestSoak) on a three-manager docker-in-docker Swarm: numbered
# QoS 1 publishers, persistent subscribers and retained readers through
# every node's load balancer while a seeded schedule of faults runs; the
# report per fault kind is printed and kept in .local/soak-report.md.
source "$(dirname "$0")/lib.sh"

SEED="${SEED:-1}"
MINUTES="${MINUTES:-10}"
MANAGERS=3 "$ROOT/hack/up.sh" >"$LOCAL/up-soak.log" 2>&1 || { cat "$LOCAL/up-soak.log"; exit 1; }
set -a; source "$LOCAL/quickstart.env"; set +a
cd "$ROOT"
status=0
# The run's length plus convergence after its last fault and the drain.
timeout=$(awk -v m="$MINUTES" 'BEGIN { printf "%dm", m + 20 }')
SOAK_SEED="$SEED" SOAK_MINUTES="$MINUTES" SOAK_FAULTS="${FAULTS:-}" \
  go test -count=1 -v -tags e2e_ha -timeout "$timeout" -run '^TestSoak$' ./test/ha/ || status=$?
if [[ "${KEEP:-}" != "1" ]]; then "$ROOT/hack/dind.sh" down; fi
exit $status
