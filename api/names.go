package api

import (
	"fmt"
	"strconv"
	"strings"
)

// The names of the Swarm objects the operator makes for a cluster, in one
// place (as Strimzi's KafkaResources): the reconcilers, the in-container
// programs, the CLI and the tests derive every name from these.

// BrokerService is broker i's service: <cluster>-broker-<i>. It is also
// the broker's DNS name on the cluster network (tasks.<it> for its task).
func BrokerService(cluster string, i int) string { return fmt.Sprintf("%s-broker-%d", cluster, i) }

// BrokerIndex is the index of a broker service of cluster (false when the
// name is not one).
func BrokerIndex(cluster, service string) (int, bool) {
	rest, ok := strings.CutPrefix(service, cluster+"-broker-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || strconv.Itoa(i) != rest {
		return 0, false
	}
	return i, true
}

// BrokerTaskHost is the name broker i's task answers to on the cluster
// network (what HAProxy and the bridges dial).
func BrokerTaskHost(cluster string, i int) string { return "tasks." + BrokerService(cluster, i) }

// BrokerVolume is the volume that holds a broker service's data.
func BrokerVolume(brokerService string) string { return brokerService + "-data" }

// BridgeClientID is the client id broker i's bridge logs in with.
func BridgeClientID(cluster string, i int) string { return BrokerService(cluster, i) + "-bridge" }

// LoadBalancerService is the cluster's HAProxy service: <cluster>-lb.
func LoadBalancerService(cluster string) string { return cluster + "-lb" }

// NetworkName is the cluster's overlay network: <cluster>-net.
func NetworkName(cluster string) string { return cluster + "-net" }

// SyncService is the cluster's sync agents' global service.
func SyncService(cluster string) string { return cluster + "-sync" }

// ExporterService is the cluster's broker exporter.
func ExporterService(cluster string) string { return cluster + "-exporter" }

// SignerJob is the job that signs a request (by its content hash) with the
// cluster's spec.tls.issuerSecret.
func SignerJob(cluster, hash string) string { return cluster + "-signer-" + hash }

// Versioned is the name of one version of a config or secret: <base>-<hash
// of its content>; a new content is a new object, as Swarm requires.
func Versioned(base, hash string) string { return base + "-" + hash }

// BridgeUser is the internal broker user the bridges (and the broker
// exporter) log in as.
const BridgeUser = "bridge"
