// Package server is the operator's HTTP API: Kubernetes-style REST for
// MqttCluster objects under /apis/mqtt.swarm/v1alpha1/mqttclusters, with
// bearer-token auth, plus the open read-only endpoints /healthz, /readyz,
// /metrics, /v1/status/leader and /v1/status/peers.
//
// It admits objects with package api's one pipeline (strict decode,
// defaults, validation) and reads and writes them through the objects
// layer (controller/objects), never raw store records. It must not talk
// to Docker: the API serves whether or not Docker is reachable.
package server
