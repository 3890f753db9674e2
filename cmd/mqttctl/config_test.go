package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server/servertest"
)

// TestMain keeps the tests away from a developer's own configuration
// (make up writes ~/.config/mqttctl/config).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mqttctl-config")
	if err != nil {
		panic(err)
	}
	os.Setenv("MQTTCTL_CONFIG", filepath.Join(dir, "absent"))
	os.Setenv("MQTTCTL_CONTEXT", "")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// noEnv clears every MQTTCTL_ connection setting and points the CLI at a
// fresh configuration file; it returns the file's path.
func noEnv(t *testing.T) string {
	t.Helper()
	for _, k := range []string{"MQTTCTL_TOKEN", "MQTTCTL_TOKEN_FILE", "MQTTCTL_SERVER", "MQTTCTL_SERVERS", "MQTTCTL_CA_FILE", "MQTTCTL_CONTEXT"} {
		t.Setenv(k, "")
	}
	path := filepath.Join(t.TempDir(), "mqttctl", "config")
	t.Setenv("MQTTCTL_CONFIG", path)
	return path
}

// TestContexts: make up's flow — a context written with set-context, then
// every command works with no flag and no environment variable; the
// commands of kubectl config; flags and environment variables win.
func TestContexts(t *testing.T) {
	path := noEnv(t)
	inst := servertest.Start(t, "")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "api-token")
	if err := os.WriteFile(tokenFile, []byte(servertest.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	call := func(args ...string) run {
		t.Helper()
		return mqttctl(t, nil, "", args...)
	}

	// Nothing configured: the default server, and no token.
	if r := call("get"); r.code != 1 || !strings.Contains(r.err, "127.0.0.1:7950") {
		t.Fatalf("no configuration: %+v", r)
	}
	if r := call("config", "current-context"); r.code != 1 || !strings.Contains(r.err, "no current context") {
		t.Fatalf("current-context with no file: %+v", r)
	}
	// A context needs a server.
	if r := call("config", "set-context", "bad", "--token-file", tokenFile); r.code != 1 || !strings.Contains(r.err, "--server is required") {
		t.Fatalf("no server: %+v", r)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("a refused set-context wrote %s", path)
	}
	// The first context set becomes the current one; paths are kept absolute.
	rel, _ := filepath.Rel(mustGetwd(t), tokenFile)
	if r := call("config", "set-context", "local", "--server", inst.URL+", http://127.0.0.1:1", "--token-file", rel); r.code != 0 {
		t.Fatalf("set-context: %+v", r)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v, want mode 0600", fi, err)
	}
	if r := call("get"); r.code != 0 {
		t.Fatalf("get through the current context: %+v", r)
	}
	if r := call("apply", "-f", "../../examples/minimal.yaml"); r.code != 0 || r.out != "mqttcluster/minimal created\n" {
		t.Fatalf("apply through the context: %+v", r)
	}
	if r := call("version"); r.code != 0 || !strings.Contains(r.out, "Client: mqttctl") || !strings.Contains(r.out, "Server: mqtt-operator") {
		t.Fatalf("version: %+v", r)
	}
	// A second context, and switching between them.
	if r := call("config", "set-context", "elsewhere", "--server", "http://127.0.0.1:1"); r.code != 0 {
		t.Fatalf("set-context elsewhere: %+v", r)
	}
	r := call("config", "get-contexts")
	if r.code != 0 || !strings.Contains(r.out, "*        local") || !strings.Contains(r.out, "elsewhere") || !strings.Contains(r.out, tokenFile) {
		t.Fatalf("get-contexts: %+v", r)
	}
	if r := call("config", "use-context", "elsewhere"); r.code != 0 {
		t.Fatalf("use-context: %+v", r)
	}
	if r := call("config", "current-context"); r.out != "elsewhere\n" {
		t.Fatalf("current-context: %+v", r)
	}
	if r := call("get", "minimal"); r.code != 1 || !strings.Contains(r.err, "127.0.0.1:1") {
		t.Fatalf("get through elsewhere: %+v", r)
	}
	// --context and MQTTCTL_CONTEXT pick another; an unknown one is an error.
	if r := call("--context", "local", "get", "minimal"); r.code != 0 {
		t.Fatalf("--context local: %+v", r)
	}
	t.Setenv("MQTTCTL_CONTEXT", "local")
	if r := call("get", "minimal"); r.code != 0 {
		t.Fatalf("MQTTCTL_CONTEXT=local: %+v", r)
	}
	t.Setenv("MQTTCTL_CONTEXT", "")
	if r := call("--context", "nope", "get"); r.code != 1 || !strings.Contains(r.err, `context "nope" is not in`) {
		t.Fatalf("unknown context: %+v", r)
	}
	if r := call("config", "use-context", "nope"); r.code != 1 {
		t.Fatalf("use-context nope: %+v", r)
	}
	// An environment variable wins over the context, a flag over both.
	t.Setenv("MQTTCTL_SERVER", inst.URL)
	t.Setenv("MQTTCTL_TOKEN_FILE", tokenFile)
	if r := call("get", "minimal"); r.code != 0 {
		t.Fatalf("MQTTCTL_SERVER over the context: %+v", r)
	}
	if r := call("--server", "http://127.0.0.1:1", "get", "minimal"); r.code != 1 || !strings.Contains(r.err, "127.0.0.1:1") {
		t.Fatalf("--server over MQTTCTL_SERVER: %+v", r)
	}
	t.Setenv("MQTTCTL_SERVER", "")
	t.Setenv("MQTTCTL_TOKEN_FILE", "")
	// view prints the file; it names the token file and holds no token.
	r = call("config", "view")
	if r.code != 0 || !strings.Contains(r.out, "current-context: elsewhere") || !strings.Contains(r.out, "token-file: "+tokenFile) || strings.Contains(r.out, servertest.Token) {
		t.Fatalf("view: %+v", r)
	}
	// Deleting the current context leaves none current.
	if r := call("config", "delete-context", "elsewhere"); r.code != 0 {
		t.Fatalf("delete-context: %+v", r)
	}
	if r := call("config", "current-context"); r.code != 1 {
		t.Fatalf("current-context after deleting it: %+v", r)
	}
	// A relative path written by hand is relative to the file's directory.
	b, _ := os.ReadFile(path)
	cfg := strings.Replace(string(b), tokenFile, "api-token", 1) + "current-context: local\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := call("get", "minimal"); r.code != 1 || !strings.Contains(r.err, filepath.Join(filepath.Dir(path), "api-token")) {
		t.Fatalf("relative token file: %+v", r)
	}
	// A file that is not a configuration is refused, with its path.
	if err := os.WriteFile(path, []byte("apiVersion: v1\nkind: Config\nclusters: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := call("config", "view"); r.code != 1 || !strings.Contains(r.err, path) {
		t.Fatalf("a kubeconfig: %+v", r)
	}
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
