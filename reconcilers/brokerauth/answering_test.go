package brokerauth

import (
	"context"
	"net"
	"testing"
	"time"
)

// Answering takes the address that accepts a connection, not the first
// one the name resolves to (a lost task's address stays in Swarm's DNS
// beside its replacement's for a while).
func TestAnsweringTakesTheAddressThatAccepts(t *testing.T) {
	ln, port := listen(t)
	dead, err := net.Listen("tcp4", "127.0.0.2:0") // bound, then closed: refuses
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	defer func() { lookupHost = net.DefaultResolver.LookupHost }()
	lookupHost = func(context.Context, string) ([]string, error) { return []string{"127.0.0.2", "127.0.0.1"}, nil }
	got, err := Answering(context.Background(), net.JoinHostPort("tasks.x-broker-0", port), time.Second)
	if err != nil || got != ln.Addr().String() {
		t.Fatalf("Answering: %q %v, want %s", got, err, ln.Addr())
	}
	ln.Close()
	if got, err := Answering(context.Background(), net.JoinHostPort("tasks.x-broker-0", port), 300*time.Millisecond); err == nil {
		t.Fatalf("nothing listens, Answering gave %q", got)
	}
}

// A name that resolves at first only to an address that never answers (a
// lost node's task) and, a moment later, also to its replacement: the
// replacement is taken as soon as the name gives it, not after the
// timeout spent on the first.
func TestAnsweringTakesAnAddressThatAppearsLater(t *testing.T) {
	ln, port := listen(t)
	start := time.Now()
	defer func() { lookupHost = net.DefaultResolver.LookupHost }()
	lookupHost = func(context.Context, string) ([]string, error) {
		if time.Since(start) < 300*time.Millisecond {
			return []string{"127.0.0.2"}, nil
		}
		return []string{"127.0.0.2", "127.0.0.1"}, nil
	}
	got, err := Answering(context.Background(), net.JoinHostPort("tasks.x-broker-0", port), 3*time.Second)
	if err != nil || got != ln.Addr().String() {
		t.Fatalf("Answering: %q %v, want %s", got, err, ln.Addr())
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %s: the new address was not dialled when it appeared", d)
	}
}

// listen opens a listener on 127.0.0.1 (closed when the test ends) and
// returns it and its port.
func listen(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return ln, port
}
