package swarm

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// Every service the operator creates or updates carries the registry
// credentials (X-Registry-Auth), so the nodes can pull; none without them.
func TestServicesCarryTheRegistryAuth(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Method+" "+r.URL.Path[strings.Index(r.URL.Path[1:], "/")+1:]] = r.Header.Get("X-Registry-Auth")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ID":"s1"}`))
	}))
	defer srv.Close()
	c, err := client.NewClientWithOpts(client.WithHost("tcp://"+strings.TrimPrefix(srv.URL, "http://")), client.WithVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	d := &Docker{c: c}
	ctx := t.Context()
	spec := swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "b0"}}

	if _, err := d.CreateService(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if h := got["POST /services/create"]; h != "" {
		t.Fatalf("without credentials, X-Registry-Auth = %q", h)
	}
	if err := d.UseRegistryAuth(registry.AuthConfig{Username: "mqtt", Password: "pw", ServerAddress: "r:5000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateService(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := d.UpdateService(ctx, "s1", swarm.Version{Index: 3}, spec); err != nil {
		t.Fatal(err)
	}
	for _, call := range []string{"POST /services/create", "POST /services/s1/update"} {
		b, err := base64.URLEncoding.DecodeString(got[call])
		var auth registry.AuthConfig
		if err != nil || json.Unmarshal(b, &auth) != nil || auth.Username != "mqtt" || auth.Password != "pw" || auth.ServerAddress != "r:5000" {
			t.Errorf("%s: X-Registry-Auth %q does not carry the credentials", call, got[call])
		}
	}
}
