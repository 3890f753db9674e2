package datasync

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// LostAfter is how long a node's sync agent must have been silent for the
// operator's node watch to find the node lost (and a starting broker's
// agent to pass over that peer); the agents fence their own node sooner.
// One value for both sides: the fence's safety rests on the order.
const LostAfter = 2 * time.Second

// Names and ports shared by the operator and the agent.
const (
	// ComponentAgent labels the sync agent's service, ComponentSecret its
	// rsync password secret.
	ComponentAgent  = "sync"
	ComponentSecret = "sync-password"
	// AgentPort serves the agent's HTTP API on the control network.
	AgentPort = 8474
	// RsyncPort is the agent's rsync daemon on the control network: with
	// TLS, a mutual-TLS tunnel to the daemon, which then listens on
	// 127.0.0.1:RsyncLocalPort only (PROXY protocol keeps the peer's
	// address for the transfer checks).
	RsyncPort      = 873
	RsyncLocalPort = 8873
	// AllowPort serves the transfer check (GET /v1/allow) to the rsync
	// daemon's pre-xfer exec, on 127.0.0.1 only.
	AllowPort = 8475
	// TLSFile and CAFile are the agents' certificate and key (one per
	// cluster, from the control-plane CA) and the control-plane CA
	// certificate (Docker secrets).
	TLSFile = "/run/secrets/sync-tls.pem"
	CAFile  = "/run/secrets/control-ca.crt"
	// RsyncUser is the rsync daemon's user (auth users).
	RsyncUser = "sync"
	// VolumesDir is where the node's Docker keeps local volumes (the
	// default data root), mounted into the agent at the same path.
	VolumesDir = "/var/lib/docker/volumes"
	// ReadyMarker, in a broker's data directory, holds the task id whose
	// data the agent prepared; the broker starts once it matches.
	ReadyMarker = ".mqtt-sync-ready"
	// PasswordFile is where the agent finds the rsync password (secret).
	PasswordFile = "/run/secrets/sync-password"
)

// Config is what the operator tells an agent; every agent of a cluster
// gets the same one but for Node.
type Config struct {
	Cluster string `json:"cluster"`
	// Node is the Swarm node id of the agent it is sent to.
	Node string `json:"node"`
	// Delay is lsyncd's delay, spec.sync.delay.
	Delay   Duration `json:"delay"`
	Peers   []Peer   `json:"peers"`
	Brokers []Broker `json:"brokers"`
}

// Duration is a time.Duration as a Go duration string on the wire.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Peer is a node running the cluster's agent.
type Peer struct {
	Node     string `json:"node"`
	Hostname string `json:"hostname"`
	// Addr is the agent's address on the control network.
	Addr string `json:"addr"`
}

// Broker says where one broker's data comes from and goes to.
type Broker struct {
	// Name is the broker's service name.
	Name   string `json:"name"`
	Volume string `json:"volume"`
	// Source is the node id allowed to push this broker's data ("" when
	// no task ever ran).
	Source string `json:"source,omitempty"`
	// Targets are the node ids it pushes to.
	Targets []string `json:"targets,omitempty"`
}

// Hash identifies a config's content.
func (c Config) Hash() string {
	b, _ := json.Marshal(c)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Peer returns the peer on node id.
func (c *Config) Peer(node string) (Peer, bool) {
	for _, p := range c.Peers {
		if p.Node == node {
			return p, true
		}
	}
	return Peer{}, false
}

// Status is what an agent reports.
type Status struct {
	Node string `json:"node"`
	// ConfigHash is the hash of the config it runs ("" before the first).
	ConfigHash string `json:"configHash,omitempty"`
	// Copies are the data copies on this node, by volume.
	Copies map[string]Copy `json:"copies,omitempty"`
	// Sources are the brokers this node pushes.
	Sources []SourceStatus `json:"sources,omitempty"`
	// Error is a problem of the agent itself (lsyncd not running, say).
	Error string `json:"error,omitempty"`
}

// Copy describes one broker's data on a node.
type Copy struct {
	// Modified is the newest modification time of its files, the auth
	// plugin's state excepted (zero: no data). rsync keeps modification
	// times, so a copy of the same state has the same time on every node.
	Modified time.Time `json:"modified,omitzero"`
	// Running: the broker runs on this node now.
	Running bool `json:"running,omitempty"`
}

// SourceStatus is one broker pushed from this node.
type SourceStatus struct {
	Broker string `json:"broker"`
	// Running: the broker's task runs here (false after it stopped: the
	// node stays its source, pushing its final state, until it runs
	// elsewhere).
	Running bool           `json:"running"`
	Targets []TargetStatus `json:"targets"`
}

// TargetStatus is one push target of a broker.
type TargetStatus struct {
	Node string `json:"node"`
	// LastSync is when the last successful sync to it began: the target
	// holds the source's data as of then.
	LastSync time.Time `json:"lastSync,omitzero"`
	// Pending: the data changed since LastSync (a sync is due).
	Pending bool `json:"pending"`
	// Error is the last failed sync's error, if it came after LastSync.
	Error string `json:"error,omitempty"`
}

// PeerView is an agent's view of its peers (GET /v1/peers): how long
// since each peer's agent last answered it, by node id. The operator
// takes it as one observer's word on whether a node is lost.
type PeerView struct {
	Node   string              `json:"node"`
	Unseen map[string]Duration `json:"unseen,omitempty"`
}
