package store

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// MessageType is the first byte of every raft log entry. New types are only
// ever appended; a type's meaning never changes.
type MessageType uint8

// Message types.
const (
	ApplyObjectType  MessageType = 0
	DeleteObjectType MessageType = 1
	UpdateStatusType MessageType = 2
	// Append new types here.
)

// IgnoreUnknownTypeFlag marks an optional message: a node that does not
// know its type skips it instead of stopping. Only messages whose loss
// leaves the state consistent may carry it.
const IgnoreUnknownTypeFlag MessageType = 128

// Object is one stored object. Objects held by the FSM are never modified
// in place: a write replaces them, so a reader may keep one.
type Object struct {
	Kind        string            `json:"kind"`
	Name        string            `json:"name"`
	UID         string            `json:"uid"`
	Generation  int64             `json:"generation"`
	CreateIndex uint64            `json:"createIndex"`
	ModifyIndex uint64            `json:"modifyIndex"`
	Created     time.Time         `json:"created"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Spec        json.RawMessage   `json:"spec,omitempty"`
	Status      json.RawMessage   `json:"status,omitempty"`
	// Schema is the format version of Spec and Status, as the layer that
	// wrote them numbers it (0: written before records carried one).
	Schema int `json:"schema,omitempty"`
}

// ApplyRequest creates an object or replaces its spec, labels and
// annotations. UID and Now are chosen by the proposer so that the FSM stays
// deterministic; they are used only when the object is created.
type ApplyRequest struct {
	Kind        string            `json:"kind"`
	Name        string            `json:"name"`
	UID         string            `json:"uid"`
	Now         time.Time         `json:"now"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Spec        json.RawMessage   `json:"spec"`
	// ExpectVersion, when set, is the ModifyIndex the object must have (0:
	// the object must not exist), else the write is a conflict.
	ExpectVersion *uint64 `json:"expectVersion,omitempty"`
	// Schema is the format version of Spec (see Object.Schema).
	Schema int `json:"schema,omitempty"`
	// Migration marks a storage migration: Spec is the same object in a
	// newer format, so the generation stays (no rollout, no approval).
	Migration bool `json:"migration,omitempty"`
}

// DeleteRequest removes an object.
type DeleteRequest struct {
	Kind          string  `json:"kind"`
	Name          string  `json:"name"`
	ExpectVersion *uint64 `json:"expectVersion,omitempty"`
}

// StatusRequest replaces an object's status. It never changes generation.
type StatusRequest struct {
	Kind          string          `json:"kind"`
	Name          string          `json:"name"`
	Status        json.RawMessage `json:"status"`
	ExpectVersion *uint64         `json:"expectVersion,omitempty"`
	// ExpectUID guards against writing the status of a deleted and
	// re-created object of the same name.
	ExpectUID string `json:"expectUID,omitempty"`
}

// Result says what a write did, in kubectl's words.
type Result = api.ApplyResult

// Results.
const (
	Created    = api.Created
	Configured = api.Configured
	Unchanged  = api.Unchanged
	Deleted    = api.Deleted
)

// response is what FSM.Apply returns for each message.
type response struct {
	Result Result
	Object *Object
	Err    error
}

func encode(t MessageType, msg any) ([]byte, error) {
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode message type %d: %w", t, err)
	}
	return append([]byte{byte(t)}, b...), nil
}
