// Package exporter is the broker exporter, an in-container program (the
// operator binary's broker-exporter command, one Swarm service per
// cluster, kept by reconcilers/brokermetrics): it subscribes to every
// broker's $SYS/broker/# on the internal listener and serves them as
// Prometheus metrics on the operator's control network, where Prometheus
// discovers it by its labels.
package exporter
