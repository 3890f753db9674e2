# Shared helpers for hack/ scripts. Source it; do not run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
mkdir -p "$LOCAL"
STACK="${STACK:-mqtt-operator}"
API_PORT="${API_PORT:-7950}"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: poll until COMMAND
# succeeds or the deadline passes.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then die "timed out after ${timeout}s waiting for $what"; fi
    sleep 0.5
  done
}

# apt_install PACKAGE...: install Debian packages, refreshing the package
# lists first (a fresh machine has none).
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [[ -z "${_APT_UPDATED:-}" ]]; then
    apt-get update -qq >/dev/null
    _APT_UPDATED=1
  fi
  apt-get install -y -qq "$@" >/dev/null
}

# local_docker: this machine's Docker for the rest of the script, even when
# the caller's DOCKER_HOST or DOCKER_CONTEXT points at a remote Swarm (the
# images are built and pushed here).
local_docker() {
  unset DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH
  export DOCKER_CONTEXT=default
}
