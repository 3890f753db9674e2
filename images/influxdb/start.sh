#!/bin/sh
# Start influxd over HTTPS with authentication on. The Docker secret
# influxdb-password is the truth for the one user's password: at every start
# influxd first runs on loopback only with authentication off (nobody on the
# network can reach it then), makes the user prometheus or sets its password
# to the secret's, and makes the database Prometheus writes to; then it
# restarts on the network with authentication on. So a volume kept from an
# earlier install (make down keeps volumes) serves a new install's password,
# a new secret rotates the password, and Prometheus never meets a
# listening InfluxDB without its user or database (which it would count as
# failed samples: HTTP 401 and 404 are not retried). The password never
# appears on a command line: curl reads it from stdin.
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

INFLUXDB_HTTP_BIND_ADDRESS=127.0.0.1:8086 INFLUXDB_HTTP_AUTH_ENABLED=false influxd -config "$CONF" &
pid=$!
wait_up $pid
pw=$(sed "s/'/\\\\'/g" "$PASS_FILE")
# CREATE USER fails when the user exists with another password; SET
# PASSWORD then makes it the secret's. Statement errors come back in the
# body (HTTP 200), so the body is checked.
out=$(printf "CREATE USER prometheus WITH PASSWORD '%s' WITH ALL PRIVILEGES" "$pw" |
  curl -sSk -X POST https://127.0.0.1:8086/query --data-urlencode q@- || true)
case "$out" in
*'"error"'*)
  out=$(printf "SET PASSWORD FOR prometheus = '%s'; GRANT ALL PRIVILEGES TO prometheus" "$pw" |
    curl -sSk -X POST https://127.0.0.1:8086/query --data-urlencode q@- || true) ;;
esac
out="$out$(curl -sSk -X POST https://127.0.0.1:8086/query --data-urlencode "q=CREATE DATABASE $DB" || true)"
case "$out" in
*'"error"'* | '') echo "influxdb: making the user and database failed" >&2; exit 1 ;;
esac
kill -TERM $pid
wait $pid || true

influxd -config "$CONF" &
pid=$!
trap 'kill -TERM $pid; wait $pid' TERM INT
wait_up $pid
printf 'user = "prometheus:%s"\n' "$(cat "$PASS_FILE")" |
  curl -sSfk -K - -o /dev/null -X POST https://127.0.0.1:8086/query --data-urlencode "q=SHOW DATABASES" ||
  { echo "influxdb: the user prometheus does not open it" >&2; exit 1; }
echo "influxdb: serving database $DB over HTTPS on :8086" >&2
wait $pid
