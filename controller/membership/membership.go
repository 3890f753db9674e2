// Package membership keeps the raft configuration equal to the Swarm's
// managers (run by the leader), and decides whether a fresh operator
// bootstraps raft alone or waits to be added.
package membership

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

// RaftMembers is what membership needs of the store.
type RaftMembers interface {
	NodeID() string
	Peers() ([]store.Peer, error)
	AddVoter(id, addr string) error
	RemoveServer(id string) error
}

// Membership keeps the raft configuration equal to the Swarm's managers,
// run by the leader: raft server id = Swarm node id, address = the
// manager's address with the raft port (published in host mode on every
// manager by the operator stack). A manager with a reachable operator is
// added as a voter; a server that is no longer a manager (demoted, or
// removed from the Swarm) is removed after Grace, one per pass, never the
// leader itself. A manager that is only Down stays: it may come back, and
// raft tolerates a minority down.
type Membership struct {
	Raft RaftMembers
	// SelfSwarmID is this node's Swarm id: its raft id may differ (a data
	// dir made before it ran on a Swarm keeps the id it had).
	SelfSwarmID string
	Nodes       func(ctx context.Context) ([]dswarm.Node, error)
	RaftPort    int
	// Grace before a server that is no longer a manager is removed.
	// Default 30s.
	Grace time.Duration
	// Reachable reports whether a new manager's operator listens (default:
	// a TCP connect within 1s): adding a voter that is not there yet would
	// only raise the quorum.
	Reachable func(addr string) bool
	Now       func() time.Time
	Log       *slog.Logger

	mu      sync.Mutex
	missing map[string]time.Time
}

// RaftAddress is a manager's raft address: its Swarm address's host and
// the raft port.
func RaftAddress(n dswarm.Node, port int) string {
	if n.ManagerStatus == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(n.ManagerStatus.Addr)
	if err != nil {
		host = n.ManagerStatus.Addr
	}
	if host == "" {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Managers are the Swarm's manager nodes by id, with their raft address.
func Managers(nodes []dswarm.Node, port int) map[string]string {
	out := map[string]string{}
	for _, n := range nodes {
		if n.Spec.Role != dswarm.NodeRoleManager {
			continue
		}
		if a := RaftAddress(n, port); a != "" {
			out[n.ID] = a
		}
	}
	return out
}

func (m *Membership) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Membership) reachable(addr string) bool {
	if m.Reachable != nil {
		return m.Reachable(addr)
	}
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Reconcile makes one pass. It returns what it changed, for logs and tests.
func (m *Membership) Reconcile(ctx context.Context) (added, removed []string, err error) {
	nodes, err := m.Nodes(ctx)
	if err != nil {
		return nil, nil, err
	}
	managers := Managers(nodes, m.RaftPort)
	if a, ok := managers[m.SelfSwarmID]; ok && m.SelfSwarmID != m.Raft.NodeID() {
		delete(managers, m.SelfSwarmID)
		managers[m.Raft.NodeID()] = a
	}
	peers, err := m.Raft.Peers()
	if err != nil {
		return nil, nil, err
	}
	inRaft := map[string]string{}
	for _, p := range peers {
		inRaft[p.ID] = p.Address
	}
	if added, err = m.addVoters(managers, inRaft); err != nil {
		return added, nil, err
	}
	removed, err = m.removeFormer(managers, peers)
	return added, removed, err
}

func (m *Membership) log() *slog.Logger {
	if m.Log != nil {
		return m.Log
	}
	return slog.Default()
}

// addVoters adds every manager whose operator answers and that raft does
// not have at its address.
func (m *Membership) addVoters(managers, inRaft map[string]string) (added []string, err error) {
	for _, id := range slices.Sorted(maps.Keys(managers)) {
		addr := managers[id]
		if cur, ok := inRaft[id]; ok && cur == addr {
			continue
		}
		if !m.reachable(addr) {
			continue
		}
		if err := m.Raft.AddVoter(id, addr); err != nil {
			return added, err
		}
		m.log().Info("raft voter added", "id", id, "address", addr, "was", inRaft[id])
		added = append(added, id)
	}
	return added, nil
}

// removeFormer removes a raft server that has not been a manager for
// Grace (one per pass, never this node).
func (m *Membership) removeFormer(managers map[string]string, peers []store.Peer) (removed []string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.missing == nil {
		m.missing = map[string]time.Time{}
	}
	grace := m.Grace
	if grace <= 0 {
		grace = 30 * time.Second
	}
	now := m.now()
	for id := range m.missing {
		if _, back := managers[id]; back {
			delete(m.missing, id)
		}
	}
	for _, p := range peers {
		if _, ok := managers[p.ID]; ok || p.ID == m.Raft.NodeID() {
			continue
		}
		since, seen := m.missing[p.ID]
		if !seen {
			m.missing[p.ID] = now
			m.log().Info("raft server is not a Swarm manager: removing it after the grace period", "id", p.ID, "grace", grace)
			continue
		}
		if now.Sub(since) < grace || len(removed) > 0 {
			continue // one removal per pass
		}
		if err := m.Raft.RemoveServer(p.ID); err != nil {
			return removed, fmt.Errorf("remove %s: %w", p.ID, err)
		}
		delete(m.missing, p.ID)
		m.log().Info("raft server removed: no longer a Swarm manager", "id", p.ID)
		removed = append(removed, p.ID)
	}
	return removed, nil
}

// ShouldBootstrap decides, for an operator with no raft state, whether it
// bootstraps a new one-voter cluster: only on the Swarm's leader manager,
// and only when every other manager's operator answers and has no raft
// state (busy reports whether any of them has state or does not answer).
// Anything else waits: an operator that is not up yet may hold the
// cluster's state (a restored one, say), and two clusters must never form.
// The others start empty and wait for the raft leader to add them.
func ShouldBootstrap(self string, nodes []dswarm.Node, busy func(ids []string) bool) bool {
	var others []string
	selfLeads := false
	for _, n := range nodes {
		if n.Spec.Role != dswarm.NodeRoleManager || n.ManagerStatus == nil {
			continue
		}
		if n.ID == self {
			selfLeads = n.ManagerStatus.Leader
			continue
		}
		others = append(others, n.ID)
	}
	if !selfLeads {
		return false
	}
	return len(others) == 0 || !busy(others)
}

// Run keeps the raft configuration equal to the Swarm's managers, a pass
// every 2 s, until ctx ends: the leader runs it while it leads (see
// package leader).
func (m *Membership) Run(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, _, err := m.Reconcile(ctx); err != nil && ctx.Err() == nil {
			m.log().Warn("raft membership pass failed", "err", err)
		}
	}
}
