package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// Config configures a store.
type Config struct {
	// DataDir holds the raft log, stable store, snapshots and node id.
	DataDir string
	// NodeID is this server's stable raft id. Empty: read from
	// DataDir/node-id, or generated there on first start.
	NodeID string
	// BindAddr is the raft transport's listen address (host:port).
	BindAddr string
	// AdvertiseAddr is the address other servers reach this one at. Empty:
	// BindAddr, or 127.0.0.1 with its port when BindAddr has no host.
	AdvertiseAddr string
	// Bootstrap makes a store with no state bootstrap a configuration with
	// itself as the only voter. Joining an existing cluster (step 5) turns
	// it off.
	Bootstrap bool
	// ApplyTimeout bounds one write. Default 10s.
	ApplyTimeout time.Duration
	// HeartbeatTimeout and ElectionTimeout (default 500ms each) and
	// LeaderLeaseTimeout (default 250ms) are raft's: a follower that hears
	// nothing for the first stands for election; a leader that cannot
	// reach a quorum for the last steps down.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	// ServerTLS and ClientTLS, when set, carry raft over mutual TLS: the
	// server config must require and verify a client certificate; the
	// client config verifies the server dialed. Unset: plain TCP (tests
	// on one machine only).
	ServerTLS, ClientTLS *tls.Config
	// Logger receives the store's and raft's logs.
	Logger *slog.Logger
	// LogOutput receives raft's own log lines. Default: stderr.
	LogOutput io.Writer
}

// Store is the raft-backed object store.
type Store struct {
	cfg    Config
	raft   *raft.Raft
	fsm    *FSM
	trans  *raft.NetworkTransport
	wal    *wal.WAL
	meta   *metadb.BoltMetaDB
	nodeID raft.ServerID
	log    *slog.Logger
	// caughtUp is closed once the state machine holds every entry that
	// was in the log when the store opened.
	caughtUp chan struct{}
	done     chan struct{}
}

// Open starts the store: it opens (or creates) the raft state in DataDir
// and, when asked and there is no state yet, bootstraps a one-voter
// cluster.
func Open(cfg Config) (*Store, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("store: data dir is required")
	}
	cfg = withDefaults(cfg)
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}
	id, err := nodeID(cfg)
	if err != nil {
		return nil, err
	}
	adv, err := advertiseAddr(cfg)
	if err != nil {
		return nil, err
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: cfg.LogOutput})

	st, err := openStorage(raftDir, hlog)
	if err != nil {
		return nil, err
	}
	logStore, meta, logs, snaps := st.wal, st.meta, st.logs, st.snaps
	trans, err := newTransport(cfg, adv, hlog)
	if err != nil {
		logStore.Close()
		meta.Close()
		return nil, fmt.Errorf("store: raft transport on %s: %w", cfg.BindAddr, err)
	}

	rc := raftConfig(cfg, id, hlog)
	fsm := NewFSM(cfg.Logger)
	s := &Store{cfg: cfg, fsm: fsm, trans: trans, wal: logStore, meta: meta, nodeID: rc.LocalID, log: cfg.Logger}

	if cfg.Bootstrap {
		if err := s.bootstrap(rc, st, trans); err != nil {
			s.closeFiles()
			return nil, err
		}
	}
	r, err := raft.NewRaft(rc, fsm, logs, logStore, snaps, trans)
	if err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("store: start raft: %w", err)
	}
	s.raft = r
	s.caughtUp, s.done = make(chan struct{}), make(chan struct{})
	s.watchReady(st)
	return s, nil
}

// withDefaults fills in a config's unset timeouts and outputs.
func withDefaults(cfg Config) Config {
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	return cfg
}

// watchReady starts what closes caughtUp: for a server that joins with no
// state, a leader replicating the log to it (it must not serve the empty
// state as if it were the cluster's); else the replay of its own log up
// to its last command.
func (s *Store) watchReady(st *storage) {
	if !s.cfg.Bootstrap {
		if has, err := raft.HasExistingState(st.logs, st.wal, st.snaps); err == nil && !has {
			go s.watchJoin()
			return
		}
	}
	target := lastCommand(st.logs, s.raft.LastIndex())
	if metas, err := st.snaps.List(); err == nil && len(metas) > 0 && target <= metas[0].Index {
		target = 0 // restored from the snapshot at open
	}
	go s.watchCatchUp(target)
}

// newTransport is raft's network transport: over mutual TLS when the
// config has TLS, else plain TCP.
func newTransport(cfg Config, adv net.Addr, hlog hclog.Logger) (*raft.NetworkTransport, error) {
	if cfg.ServerTLS == nil && cfg.ClientTLS == nil {
		return raft.NewTCPTransportWithLogger(cfg.BindAddr, adv, 3, 10*time.Second, hlog)
	}
	if cfg.ServerTLS == nil || cfg.ClientTLS == nil || cfg.ServerTLS.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("raft TLS needs a server config that requires client certificates and a client config")
	}
	layer, err := newTLSStreamLayer(cfg.BindAddr, adv, cfg.ServerTLS, cfg.ClientTLS)
	if err != nil {
		return nil, err
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog}), nil
}

// watchJoin closes caughtUp once this (new) server is in a configuration,
// knows a leader, and has applied what that leader had committed when it
// last heard from it.
func (s *Store) watchJoin() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if _, id := s.raft.LeaderWithID(); id != "" {
			// Configuration entries are not applied to the FSM: compare
			// with the last command at or below the commit index.
			if c := s.raft.CommitIndex(); c > 0 && s.fsm.Applied() >= lastCommand(s.wal, c) {
				close(s.caughtUp)
				return
			}
		}
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// lastCommand is the index of the last command in the log at or below
// last (0 when the log holds none: the snapshot, restored at open, has it
// all).
func lastCommand(logs raft.LogStore, last uint64) uint64 {
	first, err := logs.FirstIndex()
	if err != nil {
		return last
	}
	for i := last; i >= first && i > 0; i-- {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return last
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return 0
}

// watchCatchUp closes caughtUp once the FSM has applied the last command
// found in the log at start: raft restores the snapshot at once but
// replays the log only once a leader commits in the new term, and reads
// before that would see an old state.
func (s *Store) watchCatchUp(target uint64) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.fsm.Applied() < target {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
	close(s.caughtUp)
}

// CaughtUp is closed once the local state holds everything the log held
// when the store opened.
func (s *Store) CaughtUp() <-chan struct{} { return s.caughtUp }

func (s *Store) closeFiles() {
	if s.trans != nil {
		s.trans.Close()
	}
	if s.wal != nil {
		s.wal.Close()
	}
	if s.meta != nil {
		s.meta.Close()
	}
}

// Close stops raft and closes the files. Committed writes are on disk.
func (s *Store) Close() error {
	if s.done != nil {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
	var errs []error
	if s.raft != nil {
		errs = append(errs, s.raft.Shutdown().Error())
	}
	errs = append(errs, s.trans.Close(), s.wal.Close(), s.meta.Close())
	return errors.Join(errs...)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// storage is raft's files: the log (raft-wal, with its meta database),
// its cache, the snapshots.
type storage struct {
	wal   *wal.WAL
	meta  *metadb.BoltMetaDB
	logs  *raft.LogCache
	snaps *raft.FileSnapshotStore
}

func openStorage(raftDir string, hlog hclog.Logger) (*storage, error) {
	walDir := filepath.Join(raftDir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create wal dir: %w", err)
	}
	// raft-wal's Close leaves the meta database open (and locked): own it.
	meta := &metadb.BoltMetaDB{}
	logStore, err := wal.Open(walDir, wal.WithLogger(hlog), wal.WithSegmentSize(8<<20), wal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("store: open raft log: %w", err)
	}
	logs, err := raft.NewLogCache(512, logStore)
	if err != nil {
		logStore.Close()
		meta.Close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 3, hlog)
	if err != nil {
		logStore.Close()
		meta.Close()
		return nil, fmt.Errorf("store: open snapshots: %w", err)
	}
	return &storage{wal: logStore, meta: meta, logs: logs, snaps: snaps}, nil
}

func raftConfig(cfg Config, id string, hlog hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.Logger = hlog
	rc.SnapshotThreshold = 4096
	rc.SnapshotInterval = 2 * time.Minute
	rc.TrailingLogs = 4096
	rc.HeartbeatTimeout = orDefault(cfg.HeartbeatTimeout, 500*time.Millisecond)
	rc.ElectionTimeout = orDefault(cfg.ElectionTimeout, 500*time.Millisecond)
	rc.LeaderLeaseTimeout = orDefault(cfg.LeaderLeaseTimeout, 250*time.Millisecond)
	return rc
}

// bootstrap makes a one-voter cluster of this server when it has no raft
// state yet.
func (s *Store) bootstrap(rc *raft.Config, st *storage, trans raft.Transport) error {
	has, err := raft.HasExistingState(st.logs, st.wal, st.snaps)
	if err != nil {
		return fmt.Errorf("store: inspect raft state: %w", err)
	}
	if has {
		return nil
	}
	conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr(), Suffrage: raft.Voter}}}
	if err := raft.BootstrapCluster(rc, st.logs, st.wal, st.snaps, trans, conf); err != nil {
		return fmt.Errorf("store: bootstrap: %w", err)
	}
	s.log.Info("bootstrapped a new one-voter raft cluster", "id", string(rc.LocalID), "address", trans.LocalAddr())
	return nil
}

func nodeID(cfg Config) (string, error) {
	p := filepath.Join(cfg.DataDir, "node-id")
	if cfg.NodeID != "" {
		// Kept with the data: the id belongs to this raft state.
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(p, []byte(cfg.NodeID+"\n"), 0o600); err != nil {
				return "", fmt.Errorf("store: write node id: %w", err)
			}
		}
		return cfg.NodeID, nil
	}
	if b, err := os.ReadFile(p); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("store: read node id: %w", err)
	}
	buf := make([]byte, 8)
	_, _ = rand.Read(buf)
	id := "node-" + hex.EncodeToString(buf)
	if err := os.WriteFile(p, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store: write node id: %w", err)
	}
	return id, nil
}

func advertiseAddr(cfg Config) (net.Addr, error) {
	a := cfg.AdvertiseAddr
	if a == "" {
		host, port, err := net.SplitHostPort(cfg.BindAddr)
		if err != nil {
			return nil, fmt.Errorf("store: raft address %q: %w", cfg.BindAddr, err)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		a = net.JoinHostPort(host, port)
	}
	addr, err := net.ResolveTCPAddr("tcp", a)
	if err != nil {
		return nil, fmt.Errorf("store: raft advertise address %q: %w", a, err)
	}
	return addr, nil
}

// WaitLeader blocks until the cluster has a leader or ctx ends.
func (s *Store) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store: no raft leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// raftApply proposes one message and unwraps the FSM's response.
func (s *Store) raftApply(t MessageType, msg any) (*response, error) {
	buf, err := encode(t, msg)
	if err != nil {
		return nil, err
	}
	f := s.raft.Apply(buf, s.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("store: raft apply: %w", err)
	}
	resp, ok := f.Response().(*response)
	if !ok || resp == nil {
		return nil, fmt.Errorf("store: raft apply: unexpected response %T", f.Response())
	}
	if resp.Err != nil {
		return nil, resp.Err
	}
	return resp, nil
}

// Apply creates or replaces an object. A request that would change nothing
// is answered from local state without a raft write.
func (s *Store) Apply(req ApplyRequest) (Result, *Object, error) {
	if cur := s.fsm.Get(req.Kind, req.Name); cur != nil && req.ExpectVersion == nil && sameContent(cur, &req) {
		return Unchanged, cur, nil
	}
	if req.UID == "" {
		req.UID = newUID()
	}
	if req.Now.IsZero() {
		req.Now = time.Now()
	}
	resp, err := s.raftApply(ApplyObjectType, &req)
	if err != nil {
		return "", nil, err
	}
	return resp.Result, resp.Object, nil
}

// Delete removes an object.
func (s *Store) Delete(req DeleteRequest) (*Object, error) {
	resp, err := s.raftApply(DeleteObjectType, &req)
	if err != nil {
		return nil, err
	}
	return resp.Object, nil
}

// UpdateStatus replaces an object's status; an identical status makes no
// raft write.
func (s *Store) UpdateStatus(req StatusRequest) (Result, *Object, error) {
	cur := s.fsm.Get(req.Kind, req.Name)
	if cur == nil || (req.ExpectUID != "" && cur.UID != req.ExpectUID) {
		return "", nil, fmt.Errorf("%w: %s %q", ErrNotFound, req.Kind, req.Name)
	}
	if req.ExpectVersion == nil && slices.Equal(cur.Status, req.Status) {
		return Unchanged, cur, nil
	}
	resp, err := s.raftApply(UpdateStatusType, &req)
	if err != nil {
		return "", nil, err
	}
	return resp.Result, resp.Object, nil
}

// Get reads an object from local state; it returns nil if there is none.
func (s *Store) Get(kind, name string) *Object { return s.fsm.Get(kind, name) }

// List reads every object of a kind from local state, with its index.
func (s *Store) List(kind string) ([]*Object, uint64) { return s.fsm.List(kind) }

// Watch returns a channel closed at the next change, and the current index.
func (s *Store) Watch() (<-chan struct{}, uint64) { return s.fsm.Watch() }

// Barrier waits until every earlier committed write is applied locally:
// reads after it are consistent. Only the leader can call it.
func (s *Store) Barrier(timeout time.Duration) error {
	if err := s.raft.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return ErrNotLeader
		}
		return err
	}
	return nil
}

// IsLeader reports whether this node is the raft leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// LeaderCh signals leadership changes (true: became leader).
func (s *Store) LeaderCh() <-chan bool { return s.raft.LeaderCh() }

// NodeID is this server's raft id.
func (s *Store) NodeID() string { return string(s.nodeID) }

// LeaderInfo describes the raft leader as this node sees it (a wire type).
type LeaderInfo = api.LeaderInfo

// Leader reports the leader and this node's raft progress.
func (s *Store) Leader() LeaderInfo {
	addr, id := s.raft.LeaderWithID()
	st := s.raft.State()
	info := LeaderInfo{
		LeaderID: string(id), LeaderAddress: string(addr),
		NodeID: string(s.nodeID), NodeAddress: string(s.trans.LocalAddr()),
		IsLeader: st == raft.Leader, State: st.String(),
		Term:           s.raft.CurrentTerm(),
		CommitIndex:    s.raft.CommitIndex(),
		AppliedIndex:   s.raft.AppliedIndex(),
		LastIndex:      s.raft.LastIndex(),
		SkippedEntries: s.fsm.Skipped(),
	}
	if st != raft.Leader {
		info.LastContact = s.raft.LastContact()
	}
	return info
}

// Peer is one server of the raft configuration (a wire type).
type Peer = api.Peer

// Peers lists the raft configuration.
func (s *Store) Peers() ([]Peer, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("store: raft configuration: %w", err)
	}
	_, leader := s.raft.LeaderWithID()
	var out []Peer
	for _, srv := range f.Configuration().Servers {
		out = append(out, Peer{ID: string(srv.ID), Address: string(srv.Address), Suffrage: srv.Suffrage.String(), Leader: srv.ID == leader})
	}
	return out, nil
}

// HasState reports whether this server has raft state: a log, a snapshot,
// or a configuration (it was bootstrapped, or a leader reached it).
func (s *Store) HasState() bool {
	if s.raft.LastIndex() > 0 {
		return true
	}
	f := s.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// Bootstrap makes this server, started without state, the only voter of a
// new cluster. It fails if the server has state.
func (s *Store) Bootstrap() error {
	conf := raft.Configuration{Servers: []raft.Server{{ID: s.nodeID, Address: s.trans.LocalAddr(), Suffrage: raft.Voter}}}
	if err := s.raft.BootstrapCluster(conf).Error(); err != nil {
		return fmt.Errorf("store: bootstrap: %w", err)
	}
	s.log.Info("bootstrapped a new one-voter raft cluster", "id", s.nodeID, "address", s.trans.LocalAddr())
	return nil
}

// TransferLeadership hands leadership to another voter, if this server
// leads: on a graceful stop the others need not wait for a timeout.
func (s *Store) TransferLeadership() error {
	if s.raft.State() != raft.Leader {
		return nil
	}
	return s.raft.LeadershipTransfer().Error()
}

// AddVoter adds (or re-addresses) a voting server. Leader only.
func (s *Store) AddVoter(id, addr string) error {
	if err := s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, s.cfg.ApplyTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return ErrNotLeader
		}
		return fmt.Errorf("store: add voter %s at %s: %w", id, addr, err)
	}
	return nil
}

// RemoveServer removes a server from the configuration. Leader only.
func (s *Store) RemoveServer(id string) error {
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, s.cfg.ApplyTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return ErrNotLeader
		}
		return fmt.Errorf("store: remove server %s: %w", id, err)
	}
	return nil
}

// VerifyLeader checks with a quorum that this node still leads: a leader
// that was paused or cut off learns here that it does not, before it acts.
func (s *Store) VerifyLeader() error {
	if err := s.raft.VerifyLeader().Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return ErrNotLeader
		}
		return err
	}
	return nil
}

// Backup writes a snapshot of the whole state to w: the FSM's own
// snapshot format, which Restore reads. Any server can take one; the API
// takes it on the leader, after a barrier, so it holds every acknowledged
// write.
func (s *Store) Backup(w io.Writer) error {
	snap, err := s.fsm.Snapshot()
	if err != nil {
		return err
	}
	return snap.(*fsmSnapshot).writeTo(w)
}

// Snapshot forces a raft snapshot (used by tests and backups).
func (s *Store) Snapshot() error { return s.raft.Snapshot().Error() }

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40 // version 4
	b[8] = (b[8] & 0x3f) | 0x80 // RFC 4122 variant
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func sortObjects(objs []*Object) {
	slices.SortFunc(objs, func(a, b *Object) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
}

// ResolveNodeID is the raft id a store opened on dataDir with nodeID
// (empty: the stored or a generated one) will have; it writes it into the
// data dir as Open would.
func ResolveNodeID(dataDir, id string) (string, error) {
	return nodeID(Config{DataDir: dataDir, NodeID: id})
}

// Changes returns the changes after index since (see FSM.Changes).
func (s *Store) Changes(since uint64) ([]Change, uint64, bool) { return s.fsm.Changes(since) }
