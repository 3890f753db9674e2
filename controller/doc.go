// Package controller is the operator's centre, in sub-packages, in the
// order data flows through them:
//
//   - store: the raft log and its FSM (Nomad-style), the one place desired
//     state lives; its watch says what changed.
//   - objects: the typed layer over the store (every record kind, the
//     api conversion, admission's apply, status and event writes, sealed
//     credentials); nothing else sees raw store records.
//   - server: the HTTP API (forwarding writes to the leader).
//   - leader: everything that runs only on the raft leader, started after
//     one barrier and stopped on leadership loss: the cluster loop (which
//     runs reconcilers/cluster and stores its results), git sync and raft
//     membership.
//   - gitsync, membership: two of those leader-only activities.
//   - metrics: the operator's own Prometheus metrics.
//
// None of them decides what a cluster looks like in Swarm (that is the
// reconcilers') nor parses user input (that is package api's).
package controller
