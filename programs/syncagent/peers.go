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
	SilentPeer = datasync.LostAfter
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

// DefaultFenceAfter is the agents' FenceAfter: shorter than the operator's
// datasync.LostAfter (2 s), so a node cut off from the rest has stopped its brokers
// before the operator (on the other side) starts them elsewhere — both
// sides measure the same silence, each on its own clock, and the move
// adds Swarm's scheduling and the broker's start on top.
const DefaultFenceAfter = 1500 * time.Millisecond

// FenceCheckEvery is how often the agent asks itself whether to fence.
const FenceCheckEvery = 250 * time.Millisecond

// WatchFence runs Fence every FenceCheckEvery until ctx ends (apart from
// the probes: a round toward unreachable peers takes their timeout).
func (a *Agent) WatchFence(ctx context.Context) {
	if a.FenceAfter <= 0 {
		return
	}
	t := time.NewTicker(FenceCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.Fence(ctx)
	}
}

// Fence stops the brokers on this node when the agent has heard neither
// a peer (its probes, theirs) nor the operator for FenceAfter: the node is
// cut off from the rest, which the operator may be moving its brokers to
// (they must not serve the same clients' sessions on both sides). An
// agent with no peer in its config never fences (nothing could take its
// brokers over), and it heals by itself: once it hears again, Swarm's
// placement (the operator's exclusion, lifted when the node answers)
// decides where the stopped brokers run.
func (a *Agent) Fence(ctx context.Context) {
	if a.FenceAfter <= 0 {
		return
	}
	a.mu.Lock()
	if !a.stoppedAt.IsZero() {
		// A stopping agent's peers go too (a deleted cluster, sync turned
		// off): their silence says nothing, and the brokers here may
		// already be a new cluster's of the same name.
		a.mu.Unlock()
		return
	}
	cfg, last, peers := a.cfg, a.heard, 0
	if cfg != nil {
		for _, p := range cfg.Peers {
			if p.Node != a.Node {
				peers++
				if s := a.seen[p.Node]; s.After(last) {
					last = s
				}
			}
		}
	}
	silent := a.now().Sub(last)
	a.mu.Unlock()
	if peers == 0 {
		return
	}
	if silent < a.FenceAfter {
		if a.fenced {
			a.fenced = false
			a.log().Info("heard from the cluster again: no longer fenced")
		}
		return
	}
	cs, err := a.Docker.BrokerContainers(ctx)
	if err != nil {
		a.log().Warn("fence: listing this node's brokers", "err", err.Error())
		return
	}
	if !a.fenced {
		a.fenced = true
		a.log().Warn("fenced: no peer and no operator heard: stopping this node's brokers (the operator may be starting them elsewhere)", "silentFor", silent.Round(time.Millisecond).String(), "brokers", len(cs))
	}
	for _, c := range cs {
		if err := a.Docker.StopBroker(ctx, c.ID); err != nil {
			a.log().Warn("fence: stopping a broker", "broker", c.Service, "err", err.Error())
			continue
		}
		a.log().Warn("fence: broker stopped", "broker", c.Service, "task", c.TaskID)
	}
}
