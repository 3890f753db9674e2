// Package datasync keeps each broker's data on the nodes where Swarm may
// reschedule it (spec.sync): a sync agent (lsyncd pushing, an rsync daemon
// receiving) runs as a global service on the cluster's eligible nodes, and
// the operator tells every agent, from live task placement, which node is
// each broker's source and which are its targets.
//
// Safety rules, enforced on both ends:
//   - only the node the operator names as a broker's source pushes its data,
//     and only once that broker's task there was prepared (below);
//   - a receiver refuses a push from any other address, and any push into
//     a broker that runs on the receiver itself: a node that comes back
//     with an old copy (or an old config) cannot overwrite a newer one;
//   - a broker task does not start (its command waits on a marker) until
//     the agent on its node has pulled the newest copy among the reachable
//     nodes into its volume.
package datasync
