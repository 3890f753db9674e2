// Package status computes an MqttCluster's status from what a pass saw:
// the cluster's spec and previous status, its services, tasks and nodes,
// the bridges the brokers logged, where the current certificate is served,
// the sync agents' reports, the rollout and the pass's error. It is a pure
// function (no I/O, no clock of its own: the pass's time is an input), so
// every condition can be tested as a table.
package status
