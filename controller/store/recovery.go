package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// files are a data dir's raft files, opened without starting raft.
type files struct {
	meta  *metadb.BoltMetaDB
	wal   *wal.WAL
	snaps *raft.FileSnapshotStore
}

func openFiles(dataDir string, hlog hclog.Logger) (*files, error) {
	raftDir := filepath.Join(dataDir, "raft")
	walDir := filepath.Join(raftDir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create wal dir: %w", err)
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(walDir, wal.WithLogger(hlog), wal.WithSegmentSize(8<<20), wal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("store: open raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 3, hlog)
	if err != nil {
		w.Close()
		meta.Close()
		return nil, fmt.Errorf("store: open snapshots: %w", err)
	}
	return &files{meta: meta, wal: w, snaps: snaps}, nil
}

func (f *files) close() error { return errors.Join(f.wal.Close(), f.meta.Close()) }

func (f *files) hasState() (bool, error) { return raft.HasExistingState(f.wal, f.wal, f.snaps) }

// RestoreBackup turns an empty data dir into a one-voter cluster holding a
// backup's objects (see Backup): this server (id, advertised at addr)
// leads it once started, and the other managers join it as usual. It
// refuses a data dir that has raft state already.
func RestoreBackup(dataDir, id, addr string, backup io.Reader) (objects int, err error) {
	file, err := readSnapshot(backup)
	if err != nil {
		return 0, err
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn})
	f, err := openFiles(dataDir, hlog)
	if err != nil {
		return 0, err
	}
	defer f.close()
	if has, err := f.hasState(); err != nil {
		return 0, err
	} else if has {
		return 0, fmt.Errorf("store: %s already holds raft state: restore into an empty data dir", dataDir)
	}
	index := max(file.Index, 1)
	conf := raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(id), Address: raft.ServerAddress(addr), Suffrage: raft.Voter}}}
	// The transport only encodes the legacy peers list of the snapshot.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(addr))
	sink, err := f.snaps.Create(raft.SnapshotVersionMax, index, 1, conf, index, trans)
	if err != nil {
		return 0, fmt.Errorf("store: create snapshot: %w", err)
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(&file); err != nil {
		_ = sink.Cancel()
		return 0, err
	}
	if _, err := sink.Write(buf.Bytes()); err != nil {
		_ = sink.Cancel()
		return 0, fmt.Errorf("store: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return 0, fmt.Errorf("store: write snapshot: %w", err)
	}
	// The restored server's term must not run behind the snapshot's.
	if err := f.wal.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dataDir, "node-id"), []byte(id+"\n"), 0o600); err != nil {
		return 0, err
	}
	return len(file.Objects), nil
}

// Recover rewrites the raft configuration of a stopped server's data dir
// to servers (peers.json-style), for when a quorum is lost for good: start
// every survivor recovered with the same list and they elect a leader
// among themselves. The log and snapshots are kept.
func Recover(dataDir string, servers []raft.Server) error {
	if len(servers) == 0 {
		return errors.New("store: recover: no servers given")
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn})
	f, err := openFiles(dataDir, hlog)
	if err != nil {
		return err
	}
	defer f.close()
	_, trans := raft.NewInmemTransport("")
	rc := raft.DefaultConfig()
	rc.Logger = hlog
	rc.LocalID = servers[0].ID
	if err := raft.RecoverCluster(rc, NewFSM(nil), f.wal, f.wal, f.snaps, trans, raft.Configuration{Servers: servers}); err != nil {
		return fmt.Errorf("store: recover: %w", err)
	}
	return nil
}

// HasState reports whether a data dir holds raft state (a log, a
// snapshot or a term): a server with state never bootstraps.
func HasState(dataDir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dataDir, "raft")); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	f, err := openFiles(dataDir, hclog.NewNullLogger())
	if err != nil {
		return false, err
	}
	defer f.close()
	return f.hasState()
}
