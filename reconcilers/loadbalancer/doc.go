// Package loadbalancer renders the HAProxy configuration that fronts a
// cluster's brokers: plain MQTT, MQTTS with TLS ending at HAProxy, the
// balance mode, health checks, the runtime API socket and the Prometheus
// exporter. Rendering is a pure function of the spec.
//
// Every possible broker (up to the 15-replica maximum) has a server slot,
// addressed by its tasks.SERVICE name through Docker's DNS (service virtual
// IPs need IPVS, which not every host has); slots beyond spec.replicas start
// in maintenance. Scaling therefore enables or disables slots through the
// runtime API, without a reload and without touching other brokers'
// connections.
package loadbalancer
