#!/bin/sh
# Start influxd, then on the first start make the one user (prometheus,
# with the password of the Docker secret influxdb-password; InfluxDB lets
# the first admin user be made without credentials, and nothing after) and
# the database Prometheus writes to. The password never appears in a
# command line: curl reads it from stdin.
set -eu
PASS_FILE=/run/secrets/influxdb-password
DB=${INFLUXDB_DB:-prometheus}
[ -s "$PASS_FILE" ] || { echo "influxdb: $PASS_FILE is empty" >&2; exit 1; }
influxd -config /etc/influxdb/influxdb.conf &
pid=$!
trap 'kill -TERM $pid; wait $pid' TERM INT
i=0
until curl -sk -o /dev/null https://127.0.0.1:8086/ping; do
  i=$((i + 1))
  if [ $i -gt 600 ]; then echo "influxdb: did not start in 60 s" >&2; exit 1; fi
  kill -0 $pid 2>/dev/null || exit 1
  sleep 0.1
done
pw=$(sed "s/'/\\\\'/g" "$PASS_FILE")
# A no-op when a user exists (it then needs credentials, and fails).
printf "CREATE USER prometheus WITH PASSWORD '%s' WITH ALL PRIVILEGES" "$pw" |
  curl -sk -o /dev/null -X POST https://127.0.0.1:8086/query --data-urlencode q@- || true
printf 'user = "prometheus:%s"\n' "$(cat "$PASS_FILE")" |
  curl -sSfk -K - -o /dev/null -X POST https://127.0.0.1:8086/query --data-urlencode "q=CREATE DATABASE $DB" ||
  { echo "influxdb: creating database $DB failed: is the password the one the user was made with?" >&2; exit 1; }
echo "influxdb: serving database $DB over HTTPS on :8086" >&2
wait $pid
