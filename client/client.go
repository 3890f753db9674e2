// Package client is a Go client for the operator's HTTP API, used by
// mqttctl and the tests. It speaks only HTTP: no raft, no Docker.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// Client talks to the operator: to one API, or to any of several (every
// manager runs one; any of them takes every request), trying the next one
// when a server cannot be reached or has no raft leader to forward to.
type Client struct {
	bases []string
	mu    sync.Mutex
	good  int // index of the last base that answered
	token string
	http  *http.Client
}

// Options configure a client.
type Options struct {
	Server string
	Token  string
	// CAFile verifies an HTTPS server; Insecure skips verification.
	CAFile   string
	Insecure bool
	Timeout  time.Duration
}

// New returns a client for the server URL (http:// or https://; a bare
// host:port means http), or a comma-separated list of them.
func New(o Options) (*Client, error) {
	var bases []string
	for _, b := range strings.Split(o.Server, ",") {
		base := strings.TrimRight(strings.TrimSpace(b), "/")
		if base == "" {
			continue
		}
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
		if _, err := url.Parse(base); err != nil {
			return nil, fmt.Errorf("server %q: %w", b, err)
		}
		bases = append(bases, base)
	}
	if len(bases) == 0 {
		return nil, fmt.Errorf("no server: set --server or MQTTCTL_SERVER")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// A manager that is down (or cut off) must fail fast, so the next one
	// is tried within the request's timeout.
	tr.DialContext = (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext
	if o.CAFile != "" || o.Insecure {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.Insecure} //nolint:gosec // user asked for it
		if o.CAFile != "" {
			pem, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.CAFile)
			}
			cfg.RootCAs = pool
		}
		tr.TLSClientConfig = cfg
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	return &Client{bases: bases, token: o.Token, http: &http.Client{Transport: tr, Timeout: o.Timeout}}, nil
}

// Server is the API the client used last.
func (c *Client) Server() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bases[c.good]
}

// Error is a failed request, with the server's message and field causes.
type Error struct {
	Code    int
	Reason  string
	Message string
	Causes  []api.FieldError
}

func (e *Error) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	data, err := c.raw(ctx, method, path, body)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
	}
	return nil
}

// raw sends a request to the last server that answered, then to the
// others in turn when it cannot be reached (the request never left) or
// answers 503 (no raft leader to forward to yet).
func (c *Client) raw(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	c.mu.Lock()
	start := c.good
	c.mu.Unlock()
	var lastErr error
	for k := 0; k < len(c.bases); k++ {
		i := (start + k) % len(c.bases)
		data, retry, err := c.once(ctx, c.bases[i], method, path, body)
		if !retry || ctx.Err() != nil {
			if err == nil {
				c.mu.Lock()
				c.good = i
				c.mu.Unlock()
			}
			return data, err
		}
		// The next call starts with the next server, not the one that
		// failed.
		c.mu.Lock()
		c.good = (i + 1) % len(c.bases)
		c.mu.Unlock()
		lastErr = err
	}
	return nil, lastErr
}

func (c *Client) once(ctx context.Context, base, method, path string, body []byte) (data []byte, retry bool, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, false, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// Not reachable (the request never left), or no answer in time (a
		// server frozen or cut off): try the next one. Every write is safe
		// to repeat (an apply of the same document is "unchanged").
		var op *net.OpError
		var ne net.Error
		retry := (errors.As(err, &op) && op.Op == "dial") || (errors.As(err, &ne) && ne.Timeout())
		return nil, retry, fmt.Errorf("%s %s: %w", method, base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, false, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode >= 300 {
		var st api.Status
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			e := &Error{Code: resp.StatusCode, Reason: st.Reason, Message: st.Message}
			if st.Details != nil {
				e.Causes = st.Details.Causes
			}
			return nil, resp.StatusCode == http.StatusServiceUnavailable, e
		}
		return nil, resp.StatusCode == http.StatusServiceUnavailable, &Error{Code: resp.StatusCode, Message: fmt.Sprintf("server answered %s: %s", resp.Status, strings.TrimSpace(string(data)))}
	}
	return data, false, nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// Apply sends one document (YAML or JSON) to be created or updated.
func (c *Client) Apply(ctx context.Context, doc []byte) (*api.ApplyResponse, error) {
	var out api.ApplyResponse
	if err := c.do(ctx, http.MethodPost, api.BasePath, doc, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ApplyDryRun asks what Apply would store, storing nothing (the server
// defaults and validates as for Apply).
func (c *Client) ApplyDryRun(ctx context.Context, doc []byte) (*api.ApplyResponse, error) {
	var out api.ApplyResponse
	if err := c.do(ctx, http.MethodPost, api.BasePath+"?dryRun=All", doc, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GitSync reads the operator's git sync status.
func (c *Client) GitSync(ctx context.Context) (*api.GitSyncStatus, error) {
	var out api.GitSyncStatus
	if err := c.do(ctx, http.MethodGet, "/v1/gitsync", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GitSyncNow asks the leader's git sync to run now (the webhook).
func (c *Client) GitSyncNow(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/gitsync/webhook", nil, nil)
}

// Approve lets a cluster's held broker restarts roll (its current
// generation).
func (c *Client) Approve(ctx context.Context, name string) (generation int64, err error) {
	var out struct {
		ApprovedGeneration int64 `json:"approvedGeneration"`
	}
	err = c.do(ctx, http.MethodPost, api.BasePath+"/"+url.PathEscape(name)+"/approve", nil, &out)
	return out.ApprovedGeneration, err
}

// Events reads a cluster's recent events, oldest first.
func (c *Client) Events(ctx context.Context, name string) (*api.EventList, error) {
	var out api.EventList
	if err := c.do(ctx, http.MethodGet, api.BasePath+"/"+url.PathEscape(name)+"/events", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Get reads one cluster.
func (c *Client) Get(ctx context.Context, name string) (*api.MqttCluster, error) {
	var out api.MqttCluster
	if err := c.do(ctx, http.MethodGet, api.BasePath+"/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetConsistent reads an object through the raft leader, after a barrier:
// it reflects every write acknowledged before the call.
func (c *Client) GetConsistent(ctx context.Context, name string) (*api.MqttCluster, error) {
	var out api.MqttCluster
	if err := c.do(ctx, http.MethodGet, api.BasePath+"/"+url.PathEscape(name)+"?consistent=true", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List reads every cluster matching a label selector ("" for all).
func (c *Client) List(ctx context.Context, selector string) (*api.MqttClusterList, error) {
	p := api.BasePath
	if selector != "" {
		p += "?labelSelector=" + url.QueryEscape(selector)
	}
	var out api.MqttClusterList
	if err := c.do(ctx, http.MethodGet, p, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Delete removes one cluster.
func (c *Client) Delete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, api.BasePath+"/"+url.PathEscape(name), nil, nil)
}

// Version reads /version: the operator's build and API version.
func (c *Client) Version(ctx context.Context) (*api.VersionInfo, error) {
	var out api.VersionInfo
	if err := c.do(ctx, http.MethodGet, "/version", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Leader reads /v1/status/leader.
func (c *Client) Leader(ctx context.Context) (*api.LeaderInfo, error) {
	var out api.LeaderInfo
	if err := c.do(ctx, http.MethodGet, "/v1/status/leader", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Peers reads /v1/status/peers.
func (c *Client) Peers(ctx context.Context) ([]api.Peer, error) {
	var out struct {
		Peers []api.Peer `json:"peers"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/status/peers", nil, &out); err != nil {
		return nil, err
	}
	return out.Peers, nil
}

// CA reads a cluster's CA certificate.
func (c *Client) CA(ctx context.Context, name string) (*api.CA, error) {
	var out api.CA
	if err := c.do(ctx, http.MethodGet, api.BasePath+"/"+url.PathEscape(name)+"/ca", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Credentials reads the MQTT user the operator generated for a cluster.
func (c *Client) Credentials(ctx context.Context, name string) (*api.Credentials, error) {
	var out api.Credentials
	if err := c.do(ctx, http.MethodGet, api.BasePath+"/"+url.PathEscape(name)+"/credentials", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RenewCertificate asks the operator to issue a new server certificate.
func (c *Client) RenewCertificate(ctx context.Context, name string) (*api.RenewResponse, error) {
	var out api.RenewResponse
	if err := c.do(ctx, http.MethodPost, api.BasePath+"/"+url.PathEscape(name)+"/certificate/renew", []byte("{}"), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotateCA asks the operator to start a CA rotation.
func (c *Client) RotateCA(ctx context.Context, name string) (*api.RenewResponse, error) {
	var out api.RenewResponse
	if err := c.do(ctx, http.MethodPost, api.BasePath+"/"+url.PathEscape(name)+"/ca/rotate", []byte("{}"), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Backup returns a snapshot of every object (the leader's, after a
// barrier): what mqtt-operator restore reads. It holds the clusters'
// private keys: keep it as safe as the managers' disks.
func (c *Client) Backup(ctx context.Context) ([]byte, error) {
	return c.raw(ctx, http.MethodGet, "/v1/backup", nil)
}
