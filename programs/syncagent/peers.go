package syncagent

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
)

// How often the agent asks each peer whether it is there, and how long it
// waits for the answer.
const (
	PeerProbeEvery   = 500 * time.Millisecond
	PeerProbeTimeout = 500 * time.Millisecond
	// SilentPeer: a peer not heard for this long is not asked for its copy
	// when a broker starts here (the operator's LostAfter).
	SilentPeer = 2 * time.Second
)

// WatchPeers asks every peer of the config, every PeerProbeEvery until
// ctx ends, for its view (a cheap authenticated request over the same
// TLS as everything else), and keeps when each last answered: the
// operator reads it (Peers) as one independent observer of whether a
// node is lost.
func (a *Agent) WatchPeers(ctx context.Context) {
	t := time.NewTicker(PeerProbeEvery)
	defer t.Stop()
	for {
		a.probePeers(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) probePeers(ctx context.Context) {
	a.mu.Lock()
	cfg := a.cfg
	a.mu.Unlock()
	if cfg == nil {
		return
	}
	var wg sync.WaitGroup
	for _, p := range cfg.Peers {
		if p.Node == a.Node {
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, PeerProbeTimeout)
			defer cancel()
			if err := a.probe(pctx, p.Addr); err != nil {
				return
			}
			a.mu.Lock()
			a.seen[p.Node] = a.now()
			a.mu.Unlock()
		})
	}
	wg.Wait()
}

func (a *Agent) probe(ctx context.Context, addr string) error {
	if a.Probe != nil {
		return a.Probe(ctx, addr)
	}
	a.probeOnce.Do(func() { a.probeClient = a.newClient() })
	_, err := a.probeClient.Peers(ctx, net.JoinHostPort(addr, fmt.Sprint(datasync.AgentPort)))
	return err
}

// Peers is this agent's view: for every peer of its config, how long
// since it last answered (a peer counts as just seen when it first
// appears in the config).
func (a *Agent) Peers() datasync.PeerView {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := datasync.PeerView{Node: a.Node}
	if a.cfg == nil {
		return v
	}
	now := a.now()
	v.Unseen = map[string]datasync.Duration{}
	for _, p := range a.cfg.Peers {
		if p.Node != a.Node {
			v.Unseen[p.Node] = datasync.Duration(now.Sub(a.seen[p.Node]))
		}
	}
	return v
}
