#!/bin/sh
# Start influxd over HTTPS with authentication on. On the first start (no
# user made yet) it first runs on loopback only, makes the one user
# (prometheus, with the password of the Docker secret influxdb-password;
# InfluxDB lets the first admin user be made without credentials, so
# nobody on the network may reach it before that user exists) and the
# database Prometheus writes to, then restarts on the network. The password
# never appears on a command line: curl reads it from stdin.
set -eu
PASS_FILE=/run/secrets/influxdb-password
DB=${INFLUXDB_DB:-prometheus}
CONF=/etc/influxdb/influxdb.conf
[ -s "$PASS_FILE" ] || { echo "influxdb: $PASS_FILE is empty" >&2; exit 1; }

# wait_up PID: until influxd answers on loopback (60 s at most).
wait_up() {
  i=0
  until curl -sk -o /dev/null https://127.0.0.1:8086/ping; do
    i=$((i + 1))
    if [ $i -gt 600 ]; then echo "influxdb: did not start in 60 s" >&2; exit 1; fi
    kill -0 "$1" 2>/dev/null || exit 1
    sleep 0.1
  done
}

MARK=/var/lib/influxdb/.user-made
if [ ! -e "$MARK" ]; then
  INFLUXDB_HTTP_BIND_ADDRESS=127.0.0.1:8086 influxd -config "$CONF" &
  pid=$!
  wait_up $pid
  pw=$(sed "s/'/\\\\'/g" "$PASS_FILE")
  # (A user made before the mark existed: its password opens it.)
  printf "CREATE USER prometheus WITH PASSWORD '%s' WITH ALL PRIVILEGES" "$pw" |
    curl -sSfk -o /dev/null -X POST https://127.0.0.1:8086/query --data-urlencode q@- ||
    printf 'user = "prometheus:%s"\n' "$(cat "$PASS_FILE")" |
    curl -sSfk -K - -o /dev/null -X POST https://127.0.0.1:8086/query --data-urlencode "q=SHOW USERS" ||
    { echo "influxdb: creating the user failed" >&2; exit 1; }
  touch "$MARK"
  kill -TERM $pid
  wait $pid || true
fi

influxd -config "$CONF" &
pid=$!
trap 'kill -TERM $pid; wait $pid' TERM INT
wait_up $pid
printf 'user = "prometheus:%s"\n' "$(cat "$PASS_FILE")" |
  curl -sSfk -K - -o /dev/null -X POST https://127.0.0.1:8086/query --data-urlencode "q=CREATE DATABASE $DB" ||
  { echo "influxdb: creating database $DB failed: is the password the one the user was made with?" >&2; exit 1; }
echo "influxdb: serving database $DB over HTTPS on :8086" >&2
wait $pid
