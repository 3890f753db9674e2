package datasync

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// AgentClient talks to sync agents' HTTP API.
type AgentClient struct {
	// Token is the cluster's rsync password (the agents' bearer token).
	Token string
	// TLS, when set, reaches the agents over HTTPS with it (it must check
	// the agents' identity); nil: plain HTTP (tests).
	TLS *tls.Config
	// HTTP, when set, is used as is; otherwise one client is made on first
	// use (its transport keeps the connections).
	HTTP *http.Client
	once sync.Once
}

func (c *AgentClient) client() *http.Client {
	c.once.Do(func() {
		if c.HTTP != nil {
			return
		}
		c.HTTP = &http.Client{Timeout: 3 * time.Second}
		if c.TLS != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = c.TLS
			c.HTTP.Transport = tr
		}
	})
	return c.HTTP
}

func (c *AgentClient) scheme() string {
	if c.TLS != nil {
		return "https://"
	}
	return "http://"
}

func (c *AgentClient) do(ctx context.Context, method, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sync agent %s: %s: %s", req.URL.Host, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Status reads an agent's status; addr is host:port.
func (c *AgentClient) Status(ctx context.Context, addr string) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, c.scheme()+addr+"/v1/status", nil, &st)
	return st, err
}

// Configure sends an agent its config.
func (c *AgentClient) Configure(ctx context.Context, addr string, cfg Config) error {
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPut, c.scheme()+addr+"/v1/config", b, nil)
}

// Peers reads an agent's view of its peers; addr is host:port.
func (c *AgentClient) Peers(ctx context.Context, addr string) (PeerView, error) {
	var v PeerView
	err := c.do(ctx, http.MethodGet, c.scheme()+addr+"/v1/peers", nil, &v)
	return v, err
}
