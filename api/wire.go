package api

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The HTTP API's wire types: what the operator answers and the client
// (package client) and mqttctl read. Types only; the server is
// controller/server.

// BasePath is where the MqttCluster resource lives on the HTTP API.
const BasePath = "/apis/" + Group + "/" + Version + "/" + Resource

// ApplyResult is what an apply, a status write or a delete did.
type ApplyResult string

// Apply results.
const (
	Created    ApplyResult = "created"
	Configured ApplyResult = "configured"
	Unchanged  ApplyResult = "unchanged"
	Deleted    ApplyResult = "deleted"
)

// ApplyResponse is the answer of an apply (PUT/POST of a cluster).
type ApplyResponse struct {
	Result ApplyResult  `json:"result"`
	Object *MqttCluster `json:"object"`
	// DryRun: nothing was stored (?dryRun=All).
	DryRun bool `json:"dryRun,omitempty"`
	// Plan, on a dry run: what applying would do to the brokers.
	Plan *BrokerPlan `json:"plan,omitempty"`
}

// BrokerPlan is what applying a spec does to the brokers.
type BrokerPlan struct {
	// Restart are the brokers whose service changes: Swarm replaces their
	// task (a restart, their clients reconnect).
	Restart []string `json:"restart,omitempty"`
	// Add and Remove are the brokers a replica change creates or removes.
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// Changes reports whether the plan touches any broker.
func (p BrokerPlan) Changes() bool { return len(p.Restart)+len(p.Add)+len(p.Remove) > 0 }

// Status is the error body, shaped like Kubernetes' metav1.Status so that
// tools that read Kubernetes errors read these.
type Status struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Status     string         `json:"status"`
	Message    string         `json:"message"`
	Reason     string         `json:"reason"`
	Code       int            `json:"code"`
	Details    *StatusDetails `json:"details,omitempty"`
}

// StatusDetails names the object and the field causes.
type StatusDetails struct {
	Name   string       `json:"name,omitempty"`
	Kind   string       `json:"kind,omitempty"`
	Causes []FieldError `json:"causes,omitempty"`
}

// CA is the answer of GET …/mqttclusters/NAME/ca.
type CA struct {
	Certificate string `json:"caCertificate"`
	Fingerprint string `json:"fingerprint"`
}

// Credentials is the answer of GET …/mqttclusters/NAME/credentials: the
// MQTT user the operator generated. Token holders may read it, as kubectl
// users may read a Secret; it is never logged.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// RenewResponse is the answer of a renewal request.
type RenewResponse struct {
	Name        string `json:"name"`
	RequestedAt string `json:"requestedAt"`
}

// GitSyncStatus is the git sync's state.
type GitSyncStatus struct {
	Repo   string `json:"repo"`
	Branch string `json:"branch"`
	Path   string `json:"path,omitempty"`
	// Commit is the last commit applied in full.
	Commit      string       `json:"commit,omitempty"`
	LastAttempt *metav1.Time `json:"lastAttempt,omitempty"`
	LastSuccess *metav1.Time `json:"lastSuccess,omitempty"`
	LastError   string       `json:"lastError,omitempty"`
	// Applied are the clusters in git; Pruned those the last sync deleted
	// (their file left); Drift those whose live spec the last sync found
	// changed by hand since git's was applied, and put back.
	Applied []string `json:"applied,omitempty"`
	Pruned  []string `json:"pruned,omitempty"`
	Drift   []string `json:"drift,omitempty"`
	// LastDrift and LastDriftTime: the last drift found (kept after the
	// next sync finds none).
	LastDrift     []string     `json:"lastDrift,omitempty"`
	LastDriftTime *metav1.Time `json:"lastDriftTime,omitempty"`
}

// VersionInfo is what GET /version answers: the operator's build, the API
// version it serves, and the storage version of the records it writes (and
// reads, with older ones; 0: an operator from before storage versions,
// which wrote version 1).
type VersionInfo struct {
	Version        string `json:"version"`
	APIVersion     string `json:"apiVersion"`
	StorageVersion int    `json:"storageVersion,omitempty"`
}

// LeaderInfo describes the raft leader as one operator sees it.
type LeaderInfo struct {
	LeaderID      string    `json:"leaderID"`
	LeaderAddress string    `json:"leaderAddress"`
	NodeID        string    `json:"nodeID"`
	NodeAddress   string    `json:"nodeAddress"`
	IsLeader      bool      `json:"isLeader"`
	State         string    `json:"state"`
	Term          uint64    `json:"term"`
	CommitIndex   uint64    `json:"commitIndex"`
	AppliedIndex  uint64    `json:"appliedIndex"`
	LastIndex     uint64    `json:"lastIndex"`
	LastContact   time.Time `json:"lastContact,omitzero"`
	// SkippedEntries counts the raft entries this server's state machine
	// could not apply and skipped since it started.
	SkippedEntries uint64 `json:"skippedEntries,omitempty"`
}

// Peer is one server of the raft configuration.
type Peer struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// UserApplyResponse is the answer of a user apply or delete.
type UserApplyResponse struct {
	Result ApplyResult `json:"result"`
	Object *MqttUser   `json:"object"`
}
