// Package bridges observes the bridge topology of a cluster's brokers from
// what Mosquitto logs: a parent logs each bridge that connects to it ("New
// bridge connected from ADDR as CLUSTER-broker-I-bridge") and each that
// leaves. A Tracker keeps, per child broker, its parent, whether the link
// is up and since when, and what a broker's start said its image lacks
// ("image contract: ..."); it is fed incrementally and does no I/O.
package bridges
