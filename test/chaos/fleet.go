package chaos

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Fleet is many idle MQTT clients, as an IoT fleet is: each keeps one
// connection open and, when it drops, reconnects with exponential backoff
// and full jitter (a random wait up to min(Cap, Base·2^attempt)), as well-
// behaved device SDKs do, so a fleet that loses its load balancer comes
// back spread out rather than all in the same millisecond.
type Fleet struct {
	// URL is the broker address (tcp:// or ssl://), TLS its configuration.
	URL string
	// URLs, when set, replace URL: several load balancers' addresses, as a
	// device that resolves a name to a list gets them. Client i tries them
	// in turn starting at the (i mod len)-th, so the fleet is spread evenly
	// and a client whose load balancer is gone tries the next one.
	URLs       []string
	TLS        *tls.Config
	User, Pass string
	// N clients with ids IDPrefix-0..N-1.
	N        int
	IDPrefix string
	// KeepAlive is each client's MQTT keepalive (default 60 s).
	KeepAlive time.Duration
	// Base and Cap bound the backoff (defaults 100 ms, 5 s).
	Base, Cap time.Duration
	// ConnectTimeout is how long a connection attempt may take, TLS
	// handshake and CONNACK included (default 30 s, paho's): a client that
	// gives up sooner than a paced load balancer lets it in retries for
	// ever.
	ConnectTimeout time.Duration

	clients   []*fleetClient
	lastErr   atomic.Value // string: the last connect error
	lastLost  atomic.Value // string: the last connection loss's error
	connected atomic.Int64
	lost      atomic.Int64
	wg        sync.WaitGroup
	stop      chan struct{}
	stopped   sync.Once
}

type fleetClient struct {
	f  *Fleet
	c  mqtt.Client
	up atomic.Bool
}

func (f *Fleet) defaults() {
	if f.KeepAlive == 0 {
		f.KeepAlive = 60 * time.Second
	}
	if f.Base == 0 {
		f.Base = 100 * time.Millisecond
	}
	if f.Cap == 0 {
		f.Cap = 5 * time.Second
	}
	if f.ConnectTimeout == 0 {
		f.ConnectTimeout = 30 * time.Second
	}
}

// Start connects every client, parallel at a time, each retrying with
// backoff until ctx ends; it returns once all are connected at the same
// time (or ctx's error).
func (f *Fleet) Start(ctx context.Context, parallel int) error {
	f.defaults()
	f.stop = make(chan struct{})
	f.clients = make([]*fleetClient, f.N)
	sem := make(chan struct{}, parallel)
	for i := range f.N {
		fc := &fleetClient{f: f}
		o := mqtt.NewClientOptions()
		urls := f.URLs
		if len(urls) == 0 {
			urls = []string{f.URL}
		}
		for k := range urls {
			o.AddBroker(urls[(i+k)%len(urls)])
		}
		o.SetClientID(fmt.Sprintf("%s-%d", f.IDPrefix, i)).
			SetUsername(f.User).SetPassword(f.Pass).SetTLSConfig(f.TLS).SetCleanSession(true).
			SetKeepAlive(f.KeepAlive).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(f.ConnectTimeout).
			SetConnectionLostHandler(func(_ mqtt.Client, err error) {
				f.lastLost.Store(err.Error())
				if fc.up.CompareAndSwap(true, false) {
					f.connected.Add(-1)
					f.lost.Add(1)
					f.wg.Add(1)
					go func() { defer f.wg.Done(); fc.connect(context.Background()) }()
				}
			})
		fc.c = mqtt.NewClient(o)
		f.clients[i] = fc
	}
	var wg sync.WaitGroup
	for _, fc := range f.clients {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fc.connect(ctx)
		}()
	}
	wg.Wait()
	// A client that connected and lost its connection since is
	// reconnecting: all of them connected at once is what counts.
	for f.Connected() < f.N {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d clients connected: %w", f.Connected(), f.N, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// connect retries until connected, the fleet stops or ctx ends.
func (fc *fleetClient) connect(ctx context.Context) {
	f := fc.f
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			d := f.Base << min(attempt-1, 16)
			if d > f.Cap || d <= 0 {
				d = f.Cap
			}
			select {
			case <-time.After(rand.N(d) + time.Millisecond):
			case <-f.stop:
				return
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-f.stop:
			return
		default:
		}
		tok := fc.c.Connect()
		// paho tries each address in turn, each for up to ConnectTimeout.
		done := tok.WaitTimeout(time.Duration(max(1, len(f.URLs)))*f.ConnectTimeout + time.Second)
		if done && tok.Error() == nil {
			if fc.up.CompareAndSwap(false, true) {
				f.connected.Add(1)
			}
			return
		}
		if !done {
			f.lastErr.Store("connect: timed out")
		} else {
			f.lastErr.Store(tok.Error().Error())
		}
	}
}

// Connected is how many clients are connected now.
func (f *Fleet) Connected() int { return int(f.connected.Load()) }

// LastError is the last connect error a client met ("" if none).
func (f *Fleet) LastError() string {
	s, _ := f.lastErr.Load().(string)
	return s
}

// LastLost is the error of the last connection loss ("" if none).
func (f *Fleet) LastLost() string {
	s, _ := f.lastLost.Load().(string)
	return s
}

// Lost is how many connection losses the clients have seen.
func (f *Fleet) Lost() int { return int(f.lost.Load()) }

// WaitConnected polls until at least n clients are connected (true), or
// the deadline passes (false).
func (f *Fleet) WaitConnected(n int, deadline time.Time) bool {
	for f.Connected() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Stop disconnects every client and ends the reconnect loops; a second
// call does nothing.
func (f *Fleet) Stop() {
	if f.stop == nil {
		return
	}
	// Once: the reconnect loops read f.stop, which must stay the closed
	// channel (a nil one would block them for ever).
	f.stopped.Do(func() {
		close(f.stop)
		var wg sync.WaitGroup
		for _, fc := range f.clients {
			wg.Add(1)
			go func() { defer wg.Done(); fc.c.Disconnect(0) }()
		}
		wg.Wait()
		f.wg.Wait()
	})
}

// FleetHost is the address a fleet on this machine reaches host's load
// balancer at: host itself, unless it is this machine's loopback; then
// this machine's own non-loopback address, as a device on the network
// would: a published port reached through 127.0.0.1 goes through
// docker-proxy, a userland copy of every byte that no real client pays
// and that competes with HAProxy for the cores, where another local
// address is forwarded by the kernel (iptables).
func FleetHost(host string) string {
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return host
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return host
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	return host
}
