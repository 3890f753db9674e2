// Package loadbalancer renders the HAProxy configuration that fronts a
// cluster's brokers: plain MQTT, MQTTS with TLS ending at HAProxy, the
// balance mode, health checks, the runtime API socket and the Prometheus
// exporter. Rendering is a pure function of the spec.
//
// Every possible broker (up to the 15-replica maximum) has a server slot,
// addressed by its tasks.SERVICE name through Docker's DNS (service virtual
// IPs need IPVS, which not every host has). A slot whose broker service does
// not exist does not resolve and stays in maintenance; it comes up by itself
// when the broker appears. The configuration therefore does not depend on
// spec.replicas: scaling never reloads HAProxy nor touches other brokers'
// connections.
//
// The reconciler keeps the HAProxy service <cluster>-lb: its configuration
// as a versioned Docker config, the MQTTS certificate from a versioned
// Docker secret, host-mode ports, at most one task per node. Runtime
// (runtime.go) is the one part that talks to HAProxy itself: it dials each
// task's runtime API over mutual TLS on the control network to push a
// renewed certificate or drain a broker, with no reload.
package loadbalancer
