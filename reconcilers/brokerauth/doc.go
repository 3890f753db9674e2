// Package brokerauth keeps every broker's users and ACL rules current
// with no restart: it renders a cluster's auth state (the rules of
// spec.auth.acls, in the format of the broker image's cluster plugin,
// images/mosquitto/cluster_auth.c) and pushes it to each broker over its
// internal listener (MQTT over TLS, as the internal user, QoS 1: the
// PUBACK says the broker applied it). A broker that starts refuses every
// client until it has a state, so the pusher reaches it within a second
// of its listener opening and no client is served by stale rules.
package brokerauth
