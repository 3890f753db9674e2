package syncagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
)

// Options configure Run.
type Options struct {
	Agent *Agent
	// Listen is the HTTP API's address (":8474").
	Listen string
	// AllowCommand is the rsync daemon's pre-xfer exec.
	AllowCommand string
	// ConnectCommand, with TLS, is how rsync reaches a peer's daemon
	// through its tunnel (RSYNC_CONNECT_PROG; rsync replaces %H with the
	// host).
	ConnectCommand string
}

// Run starts the rsync daemon and the HTTP API, then runs the agent's loop
// until ctx ends, then hands off (Handoff) before it returns.
func Run(ctx context.Context, o Options) error {
	a := o.Agent
	// What serves peers (the API, the rsync daemon and its tunnel) and
	// lsyncd outlive ctx by the handoff.
	serving, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	if err := os.MkdirAll(filepath.Join(a.StateDir, "rsync"), 0o700); err != nil {
		return err
	}
	secrets := filepath.Join(a.StateDir, "rsyncd.secrets")
	if err := os.WriteFile(secrets, []byte(datasync.RsyncUser+":"+a.Password+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(a.StateDir, "rsync.pass"), []byte(a.Password+"\n"), 0o600); err != nil {
		return err
	}
	conf := filepath.Join(a.StateDir, "rsyncd.conf")
	a.WriteRsyncd = func(volumes []string) error {
		return writeFileAtomic(conf, []byte(RsyncdConfig(a.VolumesDir, secrets, o.AllowCommand, a.TLS != nil, volumes)), 0o600)
	}
	// No module until the operator names the cluster's brokers.
	if err := a.WriteRsyncd(nil); err != nil {
		return err
	}
	if a.TLS != nil {
		// Every rsync this process starts (lsyncd's pushes, pulls) reaches
		// peers through their tunnel.
		if err := os.Setenv("RSYNC_CONNECT_PROG", o.ConnectCommand); err != nil {
			return err
		}
	}
	if a.Lsyncd == nil {
		a.Lsyncd = func(ctx context.Context, config string) error {
			return runProcess(ctx, "lsyncd", "-log", "scarce", config)
		}
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	if a.TLS != nil {
		srv.TLSConfig = a.TLS.ServerConfig(false)
		go func() { _ = srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = srv.Serve(ln) }()
	}
	defer srv.Close()
	// The transfer check, for the rsync daemon's pre-xfer exec: loopback.
	aln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(datasync.AllowPort)))
	if err != nil {
		return err
	}
	asrv := &http.Server{Handler: a.AllowHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = asrv.Serve(aln) }()
	defer asrv.Close()
	if a.TLS != nil {
		tln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(datasync.RsyncPort)))
		if err != nil {
			return err
		}
		defer tln.Close()
		go ServeTunnel(serving, tln, a.TLS.ServerConfig(true), net.JoinHostPort("127.0.0.1", strconv.Itoa(datasync.RsyncLocalPort)), a.log())
	}
	go supervise(serving, a.log(), "rsync daemon", func(ctx context.Context) error {
		_ = os.Remove("/run/mqtt-sync/rsyncd.pid")
		return runProcess(ctx, "rsync", "--daemon", "--no-detach", "--config="+conf)
	})
	go a.WatchPeers(serving)
	go a.WatchFence(serving)
	// The moment of the stop, not the moment the loop sees it: a step can
	// take seconds (lsyncd ending a transfer) and the handoff asks whether
	// a broker ran here just before the stop.
	context.AfterFunc(ctx, a.Stopping)
	a.log().Info("sync agent started", "node", a.Node, "listen", o.Listen)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	var lastErr string
	step := func() {
		err := a.Step(serving)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != lastErr && msg != "" {
			a.log().Warn("sync agent step", "err", msg)
		}
		lastErr = msg
	}
	for {
		select {
		case <-ctx.Done():
			a.Handoff(tick.C, step)
			a.Stop()
			return nil
		case <-tick.C:
		}
		step()
	}
}

// Handoff ends the agent's life after Swarm stopped it. A drain stops a
// node's sync agent together with its brokers: the agent keeps stepping —
// pushing what the brokers save on their way out, serving its copies to
// the node where a broker starts next (which waits for the broker to stop
// here, then pulls the newest copy) — until no broker has run here for
// HandoffLinger. It returns at once when no broker ran here lately (the
// operator may already have named another node the source: the copy
// here is still the one to pull), and after HandoffStopWait when the
// brokers here keep running (the agent alone is stopped: an update, sync
// turned off).
func (a *Agent) Handoff(tick <-chan time.Time, step func()) {
	a.mu.Lock()
	stopped := a.stoppedAt
	if stopped.IsZero() {
		stopped = a.now()
	}
	// Lately: before the stop. Measured from now, a step that was still
	// running when Swarm stopped the agent (lsyncd ending, up to 5 s)
	// would make a broker that ran until the drain look long gone, and
	// the agent would leave without handing its data off.
	ran := len(a.running) > 0 || !a.lastRan.IsZero() && stopped.Sub(a.lastRan) < HandoffLinger
	a.mu.Unlock()
	if !ran {
		return
	}
	a.log().Info("stopping: handing this node's broker data off first")
	start, quiet := a.now(), time.Time{}
	for {
		<-tick
		step()
		a.mu.Lock()
		busy := len(a.running) > 0
		a.mu.Unlock()
		switch {
		case busy && quiet.IsZero() && a.now().Sub(start) >= HandoffStopWait:
			a.log().Info("the brokers here keep running: nothing to hand off")
			return
		case busy:
		case quiet.IsZero():
			quiet = a.now()
		case a.now().Sub(quiet) >= HandoffLinger:
			a.log().Info("handed off", "took", a.now().Sub(start).Round(time.Millisecond).String())
			return
		}
	}
}

// Stopping records when Swarm stopped the agent (Run calls it on SIGTERM,
// while the loop may still be in a step).
func (a *Agent) Stopping() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stoppedAt.IsZero() {
		a.stoppedAt = a.now()
	}
}

// HandoffStopWait is how long a stopping agent waits for its node's
// brokers to stop (Mosquitto saves its state and exits within a second or
// two); HandoffLinger how long it keeps serving after they have (a peer
// pulling the copy, lsyncd's last push). Both fit in the agent service's
// stop grace period.
const (
	HandoffStopWait = 5 * time.Second
	HandoffLinger   = 5 * time.Second
)

// ServeTunnel accepts mutual-TLS connections (only peers with the same
// identity: the cluster's other agents) and relays each to the rsync
// daemon at local, after a PROXY protocol v1 header with the peer's
// address, until ln closes.
func ServeTunnel(ctx context.Context, ln net.Listener, cfg *tls.Config, local string, log *slog.Logger) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			tc := tls.Server(c, cfg)
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := tc.HandshakeContext(hctx)
			cancel()
			if err != nil {
				log.Warn("refused an rsync tunnel connection", "from", c.RemoteAddr().String(), "err", err.Error())
				return
			}
			d, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", local)
			if err != nil {
				return
			}
			defer d.Close()
			if _, err := io.WriteString(d, proxyHeader(c.RemoteAddr(), c.LocalAddr())); err != nil {
				return
			}
			Relay(tc, d)
		}()
	}
}

// proxyHeader is a PROXY protocol v1 line for a connection from src to dst.
func proxyHeader(src, dst net.Addr) string {
	s, _ := src.(*net.TCPAddr)
	d, _ := dst.(*net.TCPAddr)
	if s == nil || d == nil {
		return "PROXY UNKNOWN\r\n"
	}
	fam := "TCP4"
	if s.IP.To4() == nil {
		fam = "TCP6"
	}
	return fmt.Sprintf("PROXY %s %s %s %d %d\r\n", fam, s.IP, d.IP, s.Port, d.Port)
}

// halfCloser is a connection whose write side closes alone.
type halfCloser interface{ CloseWrite() error }

// Relay copies both ways until both sides are done, passing each side's
// end of stream on (a half close).
func Relay(a, b io.ReadWriter) {
	done := make(chan struct{}, 2)
	cp := func(dst io.Writer, src io.Reader) {
		_, _ = io.Copy(dst, src)
		if hc, ok := dst.(halfCloser); ok {
			_ = hc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
}

// Connect is rsync's RSYNC_CONNECT_PROG with TLS: it dials addr's tunnel
// with cfg and relays stdin and stdout through it.
func Connect(addr string, cfg *tls.Config, stdin io.Reader, stdout io.Writer) error {
	c, err := (&tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}).Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	Relay(struct {
		io.Reader
		io.Writer
	}{stdin, stdout}, c)
	return nil
}

// supervise reruns a process that exits, a second apart.
func supervise(ctx context.Context, log *slog.Logger, what string, run func(context.Context) error) {
	for ctx.Err() == nil {
		err := run(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Error(what+" exited; restarting it", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// runProcess runs a command until it exits or ctx ends (SIGTERM, then
// SIGKILL after 5 s), its output on the agent's.
func runProcess(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("exited")
	}
	return fmt.Errorf("%s: %w", name, err)
}

// AllowFromEnv is the rsync daemon's pre-xfer exec: it asks the agent on
// this host whether the transfer described by rsync's environment may go
// on. The reason of a refusal is printed (rsync shows it to the client).
func AllowFromEnv(allowPort int) int {
	pull := false
	for i := 0; ; i++ {
		v, ok := os.LookupEnv(fmt.Sprintf("RSYNC_ARG%d", i))
		if !ok {
			break
		}
		if v == "--sender" {
			pull = true // the daemon sends: the client pulls
		}
	}
	q := url.Values{"request": {os.Getenv("RSYNC_REQUEST")}, "host": {os.Getenv("RSYNC_HOST_ADDR")}}
	if pull {
		q.Set("pull", "1")
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/allow?%s", allowPort, q.Encode()))
	if err != nil {
		fmt.Println("refused: the sync agent does not answer:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b := make([]byte, 512)
		n, _ := resp.Body.Read(b)
		fmt.Println(strings.TrimSpace(string(b[:n])))
		return 1
	}
	return 0
}
