// Package store keeps the operator's desired state in a hashicorp/raft
// finite state machine: objects keyed by kind and name, with server-set
// metadata (uid, generation, resourceVersion, creation time) and a status
// written apart from the spec.
//
// Every change is a typed raft log entry (one type byte, then JSON), applied
// deterministically by the FSM; reads are served from the local FSM. The
// default is a single voter in the data directory; more voters only add
// peers to the same configuration.
//
// The store knows nothing of Docker or of what a spec means: it compares
// specs as canonical JSON bytes.
package store
