package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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
}

// Run starts the rsync daemon and the HTTP API, then runs the agent's loop
// until ctx ends.
func Run(ctx context.Context, o Options) error {
	a := o.Agent
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
	if err := os.WriteFile(conf, []byte(RsyncdConfig(a.VolumesDir, secrets, o.AllowCommand)), 0o600); err != nil {
		return err
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
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	go supervise(ctx, a.log(), "rsync daemon", func(ctx context.Context) error {
		_ = os.Remove("/run/mqtt-sync/rsyncd.pid")
		return runProcess(ctx, "rsync", "--daemon", "--no-detach", "--config="+conf)
	})
	a.log().Info("sync agent started", "node", a.Node, "listen", o.Listen)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			a.Stop()
			return nil
		case <-tick.C:
		}
		err := a.Step(ctx)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != lastErr && msg != "" {
			a.log().Warn("sync agent step", "err", msg)
		}
		lastErr = msg
	}
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
func AllowFromEnv(agentPort int) int {
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
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/allow?%s", agentPort, q.Encode()))
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
