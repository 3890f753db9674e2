// Package brokermetrics keeps each cluster's broker exporter service (the
// program is programs/exporter, run from the operator's image): one task
// on the cluster network, to reach the brokers' internal listener, and on
// the operator's control network, where Prometheus scrapes it. It writes
// to Swarm only through reconcilers/swarm.
package brokermetrics
