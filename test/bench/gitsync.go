package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/gitsync"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

func gitIn(dir string, args ...string) error {
	cmd := exec.Command("git", append([]string{"-c", "user.name=bench", "-c", "user.email=bench@example.com"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %v: %v: %s", args, err, out)
	}
	return nil
}

// runGitSyncBench measures the operator's git sync in process (its real
// store, a real bare repository): commit -> applied with a 5 s interval,
// and with the webhook (interval 1 h).
func runGitSyncBench() error {
	dir, err := os.MkdirTemp("", "gitsync-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	st, err := store.Open(store.Config{DataDir: filepath.Join(dir, "data"), BindAddr: addr, Bootstrap: true, LogOutput: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := st.WaitLeader(ctx); err != nil {
		return err
	}
	bare, work := filepath.Join(dir, "repo.git"), filepath.Join(dir, "work")
	for _, args := range [][]string{{"init", "-q", "--bare", "-b", "main", bare}, {"clone", "-q", bare, work}} {
		if err := gitIn(dir, args...); err != nil {
			return err
		}
	}
	if err := gitIn(work, "checkout", "-q", "-b", "main"); err != nil {
		return err
	}
	replicas := 0
	commit := func() error {
		replicas = replicas%15 + 1
		doc := fmt.Sprintf("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: bench}\nspec: {replicas: %d}\n", replicas)
		if err := os.WriteFile(filepath.Join(work, "bench.yaml"), []byte(doc), 0o644); err != nil {
			return err
		}
		for _, args := range [][]string{{"add", "bench.yaml"}, {"commit", "-q", "-m", "bench"}, {"push", "-q", "origin", "main"}} {
			if err := gitIn(work, args...); err != nil {
				return err
			}
		}
		return nil
	}
	applied := func(want int) bool {
		o := st.Get(api.KindMqttCluster, "bench")
		if o == nil {
			return false
		}
		var spec api.MqttClusterSpec
		_ = json.Unmarshal(o.Spec, &spec)
		return spec.Replicas != nil && int(*spec.Replicas) == want
	}
	measure := func(g *gitsync.Syncer, runs int, after func()) ([]time.Duration, error) {
		gctx, stop := context.WithCancel(ctx)
		defer stop()
		go g.Run(gctx)
		var out []time.Duration
		for i := 0; i < runs; i++ {
			if err := commit(); err != nil {
				return nil, err
			}
			start := time.Now()
			after()
			for !applied(replicas) {
				if time.Since(start) > 2*g.Interval+10*time.Second && g.Interval < time.Hour || time.Since(start) > time.Minute {
					return nil, fmt.Errorf("commit %d not applied", i)
				}
				time.Sleep(5 * time.Millisecond)
			}
			out = append(out, time.Since(start))
		}
		return out, nil
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	polled, err := measure(&gitsync.Syncer{Objects: &objects.Objects{Store: st}, Defaults: api.BuiltinDefaults(), Repo: bare, Branch: "main", Interval: 5 * time.Second, Log: log}, 6, func() {})
	if err != nil {
		return err
	}
	g := &gitsync.Syncer{Objects: &objects.Objects{Store: st}, Defaults: api.BuiltinDefaults(), Repo: bare, Branch: "main", Interval: time.Hour, Log: log}
	hooked, err := measure(g, 20, g.Trigger)
	if err != nil {
		return err
	}
	fmt.Printf("\ngit sync (in process: the operator's store, a local bare repository)\n")
	fmt.Printf("  commit -> applied, interval 5s, %d commits:   min %s median %s max %s   target <= interval + 2s\n", len(polled), pct(polled, 0), pct(polled, 50), pct(polled, 100))
	fmt.Printf("  commit -> applied via the webhook, %d commits: min %s median %s max %s   target <= 2s\n", len(hooked), pct(hooked, 0), pct(hooked, 50), pct(hooked, 100))
	return nil
}
