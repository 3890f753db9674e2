package store

import "errors"

// Sentinel errors. The FSM returns the business errors (conflict, not found)
// as its response value; raftApply unwraps them.
var (
	// ErrNotLeader: this node cannot accept writes; ask the leader.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNotFound: no object of that kind and name.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the object changed since the resourceVersion the write
	// carried (or exists when it should not).
	ErrConflict = errors.New("conflict")
	// ErrSkipped: the FSM could not apply the entry (unknown type or
	// undecodable payload) and skipped it on every replica alike.
	ErrSkipped = errors.New("raft entry skipped")
	// ErrClosed: the store was shut down.
	ErrClosed = errors.New("store closed")
)
