// Package cluster brings one MqttCluster's Swarm state to its spec: it
// calls the other reconcilers in order (network, credentials, secrets,
// sync agents, exporter, brokers with their rolling update, load balancer,
// certificate push, pruning) and returns a Result — the status computed
// by package status, the pass's events, when to come back. It writes no
// store record but the cluster's credentials, through CredentialStore,
// because a certificate must be stored before any task mounts it; every
// batch of Swarm writes is fenced by Leadership. The leader package reads
// the cluster, calls it, and stores the result.
package cluster
