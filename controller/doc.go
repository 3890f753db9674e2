// Package controller wires the operator: the leader loop that runs the
// reconcilers only while this operator is the raft leader, and the cluster
// reconciler that calls them in order for one MqttCluster and writes its
// status. Its
// sub-packages hold the store (store), the HTTP API (server) and the Go
// client (client).
//
// It must not decide what a cluster looks like in Swarm (that is the
// reconcilers') nor parse user input (that is package api's).
package controller
