// Package testutil holds helpers shared by tests: golden files and parsing
// a cluster spec with the real admission pipeline.
package testutil

import (
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// Update rewrites golden files: go test ./... -update.
var Update = flag.Bool("update", false, "rewrite golden files")

// Golden compares got with testdata/NAME, rewriting it under -update.
func Golden(t testing.TB, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *Update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from golden:\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

// Cluster parses "metadata: {name: iot}" plus the given YAML (a spec) with
// api.Parse and the built-in defaults.
func Cluster(t testing.TB, specYAML string) *api.MqttCluster {
	t.Helper()
	c, err := api.Parse([]byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: iot}\n"+specYAML), api.BuiltinDefaults())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FreeAddr returns a loopback address with a port free at the time of the
// call, for servers a test starts.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
