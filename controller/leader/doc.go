// Package leader runs everything that only the raft leader does, as
// Nomad's leader.go: Leader.Run watches leadership; on winning it, after
// one Barrier, it runs the Establish steps (the sealing migration), then
// starts the cluster loop and the Tasks (git sync, raft membership) on one
// context, and on losing it cancels that context and waits for all of
// them. The cluster loop wakes a cluster only when the store's watch says
// its spec, labels or annotations moved, at its requeue time, and at the
// resync; Clusters is its ReconcileFunc: it reads the cluster through the
// objects layer, admits it again, runs reconcilers/cluster and stores the
// status and events it returns.
package leader
