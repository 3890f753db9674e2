// Package syncagent is the sync agent: it runs on every node where a cluster's
// brokers may run (a global Swarm service), serves the node's copies of
// broker data through an rsync daemon, pushes the brokers this node runs
// with lsyncd, and prepares a broker's data before the broker starts.
// The operator configures it over HTTP on the control network.
package syncagent
