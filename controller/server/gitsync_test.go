package server_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server/servertest"
)

func TestGitSyncRoutes(t *testing.T) {
	t.Parallel()
	in := servertest.Start(t, "")
	// No git sync: 404 on both routes.
	if code, _ := do(t, in.URL, call{method: http.MethodGet, path: "/v1/gitsync", token: tok}); code != http.StatusNotFound {
		t.Fatalf("status without a git sync: %d", code)
	}
	if code, _ := do(t, in.URL, call{method: http.MethodPost, path: "/v1/gitsync/webhook", token: tok}); code != http.StatusNotFound {
		t.Fatalf("webhook without a git sync: %d", code)
	}
	// With one: the webhook triggers it (token required), the status is read.
	var n atomic.Int32
	srv, err := server.New(server.Config{Store: in.Store, Token: tok, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), GitSyncTrigger: func() { n.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	if code, _ := do(t, hs.URL, call{method: http.MethodPost, path: "/v1/gitsync/webhook"}); code != http.StatusUnauthorized || n.Load() != 0 {
		t.Fatalf("webhook without a token: %d, triggered %d", code, n.Load())
	}
	if code, _ := do(t, hs.URL, call{method: http.MethodPost, path: "/v1/gitsync/webhook", token: tok}); code != http.StatusAccepted || n.Load() != 1 {
		t.Fatalf("webhook: %d, triggered %d", code, n.Load())
	}
	if err := (&objects.Objects{Store: in.Store}).SetGitSyncStatus(api.GitSyncStatus{Repo: "/r.git", Branch: "main", Commit: "abc", Applied: []string{"iot"}}); err != nil {
		t.Fatal(err)
	}
	code, body := do(t, hs.URL, call{method: http.MethodGet, path: "/v1/gitsync", token: tok})
	var st server.GitSyncStatus
	if code != http.StatusOK || json.Unmarshal(body, &st) != nil || st.Commit != "abc" || st.Applied[0] != "iot" {
		t.Fatalf("status: %d %s", code, body)
	}
	// The internal kind is never listed as a cluster.
	code, body = do(t, hs.URL, call{method: http.MethodGet, path: server.BasePath, token: tok})
	if code != http.StatusOK || string(body) == "" || json.Unmarshal(body, &struct{}{}) != nil {
		t.Fatalf("list: %d", code)
	}
	var list struct{ Items []json.RawMessage }
	_ = json.Unmarshal(body, &list)
	if len(list.Items) != 0 {
		t.Fatalf("the git sync status listed as a cluster: %s", body)
	}
}
