package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/leader"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
)

// peerStorageVersions asks every raft server's operator (GET /version, over
// the peer transport that checks its identity) which storage version it
// reads; this one answers for itself. An operator from before storage
// versions answers none: version 1.
func peerStorageVersions(self string, servers func() ([]api.Peer, error), peers *peerTransports, apiPort int) objects.PeerVersions {
	return func(ctx context.Context) (map[string]int, error) {
		ps, err := servers()
		if err != nil {
			return nil, err
		}
		out := map[string]int{}
		var errs []error
		for _, p := range ps {
			if p.ID == self {
				out[p.ID] = objects.StorageVersion
				continue
			}
			host, _, err := net.SplitHostPort(p.Address)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: address %q", p.ID, p.Address))
				continue
			}
			u := url.URL{Scheme: peers.scheme(), Host: net.JoinHostPort(host, strconv.Itoa(apiPort)), Path: "/version"}
			v, err := askVersion(ctx, &http.Client{Transport: peers.to(p.ID), Timeout: 3 * time.Second}, u.String())
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.ID, err))
				continue
			}
			out[p.ID] = v
		}
		return out, errors.Join(errs...)
	}
}

func askVersion(ctx context.Context, c *http.Client, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /version: %s", resp.Status)
	}
	var vi api.VersionInfo
	if err := json.NewDecoder(resp.Body).Decode(&vi); err != nil {
		return 0, fmt.Errorf("GET /version: %w", err)
	}
	if vi.StorageVersion == 0 {
		return 1, nil
	}
	return vi.StorageVersion, nil
}

// storageMigration is the leader task that rewrites older records in the
// current storage version once every operator reads it (objects.
// MigrateStorage), then ends for this term.
func storageMigration(objs *objects.Objects, fence func() error, peers objects.PeerVersions, log *slog.Logger) leader.Task {
	return leader.Task{Name: "storage migration", Run: func(ctx context.Context) {
		if _, err := objs.MigrateStorage(ctx, fence, peers, 10*time.Second, log); err != nil && ctx.Err() == nil {
			log.Error("storage migration", "err", err)
		}
	}}
}
