package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/test/chaos"
)

// A fleet larger than one process may hold: each client is an open file,
// and a process here may have at most 20,000 (the machine's hard limit,
// which no process can raise). procFleet splits it over worker processes
// (this program run with -fleet-worker), each holding a chaos.Fleet and
// reporting its counts on stdout, as several gateways of one fleet would.

// fleetWorkerConfig is what a worker reads from its stdin.
type fleetWorkerConfig struct {
	URLs       []string `json:"urls"`
	CA         string   `json:"ca"` // PEM
	ServerName string   `json:"serverName"`
	User       string   `json:"user"`
	Pass       string   `json:"pass"`
	N          int      `json:"n"`
	IDPrefix   string   `json:"idPrefix"`
	Parallel   int      `json:"parallel"`
}

// fleetStatus is what a worker writes to its stdout, a line every 100 ms.
type fleetStatus struct {
	Started   bool   `json:"started,omitempty"` // every client connected once, at the same time
	Err       string `json:"err,omitempty"`     // Start failed
	Connected int    `json:"connected"`
	Lost      int    `json:"lost"`
	LastErr   string `json:"lastErr,omitempty"`
}

// runFleetWorker is the worker: it connects its clients and keeps them
// connected until its stdin closes.
func runFleetWorker(in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	var cfg fleetWorkerConfig
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("fleet worker config: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(cfg.CA)) {
		return fmt.Errorf("fleet worker: no CA certificate")
	}
	f := &chaos.Fleet{URLs: cfg.URLs, TLS: &tls.Config{RootCAs: roots, ServerName: cfg.ServerName, MinVersion: tls.VersionTLS12},
		User: cfg.User, Pass: cfg.Pass, N: cfg.N, IDPrefix: cfg.IDPrefix, Cap: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// The parent closes stdin to stop the worker.
		_, _ = io.Copy(io.Discard, io.MultiReader(dec.Buffered(), in))
		cancel()
	}()
	var mu sync.Mutex
	st := fleetStatus{}
	go func() {
		err := f.Start(ctx, cfg.Parallel)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			st.Err = err.Error()
		} else {
			st.Started = true
		}
	}()
	enc := json.NewEncoder(out)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.Stop()
			return nil
		case <-t.C:
		}
		mu.Lock()
		st.Connected, st.Lost, st.LastErr = f.Connected(), f.Lost(), f.LastError()
		s := st
		mu.Unlock()
		if err := enc.Encode(s); err != nil {
			f.Stop()
			return err
		}
	}
}

// procFleet is a fleet split over worker processes.
type procFleet struct {
	procs []*fleetProc
}

type fleetProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	mu   sync.Mutex
	st   fleetStatus
	done chan struct{} // closed when its stdout ends
}

func (p *fleetProc) status() fleetStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// startProcFleet starts cfg.N clients over workers of at most per clients
// each and returns once every worker has all its clients connected (or
// ctx ends, or a worker fails).
func startProcFleet(ctx context.Context, cfg fleetWorkerConfig, per int) (*procFleet, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	pf := &procFleet{}
	for k, left := 0, cfg.N; left > 0; k++ {
		c := cfg
		c.N = min(per, left)
		c.IDPrefix = fmt.Sprintf("%s-p%d", cfg.IDPrefix, k)
		left -= c.N
		p := &fleetProc{cmd: exec.Command(self, "-fleet-worker"), done: make(chan struct{})}
		p.cmd.Stderr = os.Stderr
		out, err := p.cmd.StdoutPipe()
		if err == nil {
			p.in, err = p.cmd.StdinPipe()
		}
		if err == nil {
			err = p.cmd.Start()
		}
		if err != nil {
			pf.Stop()
			return nil, err
		}
		pf.procs = append(pf.procs, p)
		go func() {
			defer close(p.done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var st fleetStatus
				if json.Unmarshal(sc.Bytes(), &st) == nil {
					p.mu.Lock()
					p.st = st
					p.mu.Unlock()
				}
			}
		}()
		if err := json.NewEncoder(p.in).Encode(c); err != nil {
			pf.Stop()
			return nil, err
		}
	}
	for {
		started := 0
		for _, p := range pf.procs {
			st := p.status()
			select {
			case <-p.done:
				pf.Stop()
				return nil, fmt.Errorf("a fleet worker exited (%d connected)", st.Connected)
			default:
			}
			if st.Err != "" {
				pf.Stop()
				return nil, fmt.Errorf("fleet worker: %s", st.Err)
			}
			if st.Started {
				started++
			}
		}
		if started == len(pf.procs) {
			return pf, nil
		}
		select {
		case <-ctx.Done():
			n := pf.Connected()
			pf.Stop()
			return nil, fmt.Errorf("%d of %d clients connected: %w", n, cfg.N, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Connected is how many clients are connected (as of the workers' last
// reports, at most 100 ms old).
func (pf *procFleet) Connected() int {
	n := 0
	for _, p := range pf.procs {
		n += p.status().Connected
	}
	return n
}

// Lost is how many connection losses the clients have seen.
func (pf *procFleet) Lost() int {
	n := 0
	for _, p := range pf.procs {
		n += p.status().Lost
	}
	return n
}

// LastError is a worker's last connect error.
func (pf *procFleet) LastError() string {
	for _, p := range pf.procs {
		if e := p.status().LastErr; e != "" {
			return e
		}
	}
	return ""
}

// WaitConnected polls until at least n clients are connected (true), or
// the deadline passes (false).
func (pf *procFleet) WaitConnected(n int, deadline time.Time) bool {
	for pf.Connected() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Stop closes every worker's stdin (it disconnects its clients and exits)
// and waits for them, killing one that takes over a minute.
func (pf *procFleet) Stop() {
	for _, p := range pf.procs {
		_ = p.in.Close()
	}
	for _, p := range pf.procs {
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			_ = p.cmd.Process.Kill()
		}
		_ = p.cmd.Wait()
	}
	pf.procs = nil
}
