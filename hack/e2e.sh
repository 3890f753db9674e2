#!/usr/bin/env bash
# End-to-end tests on a real Swarm: deploys the stack (hack/up.sh), runs the
# e2e suite, then removes the stack (keeping volumes, as make down does).
source "$(dirname "$0")/lib.sh"

# With the monitoring stack: test/e2e/monitoring_test.go checks it.
MONITORING=1 MONITORING_PORT=9090 "$ROOT/hack/up.sh"
set -a; source "$LOCAL/quickstart.env"; set +a
cd "$ROOT"
status=0
go test -count=1 -tags e2e -timeout 20m ./test/e2e/... ./reconcilers/... || status=$?
if [[ "${KEEP:-}" != "1" ]]; then "$ROOT/hack/down.sh"; fi
exit $status
