package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A list of servers: one that is down, one that hangs (a frozen process:
// the connection is accepted, no answer comes), one that answers. Every
// call gets its answer, and the next call starts with the server that
// answered.
func TestFailoverAcrossServers(t *testing.T) {
	t.Parallel()
	down, _ := net.Listen("tcp", "127.0.0.1:0")
	downAddr := down.Addr().String()
	down.Close()
	hung, _ := net.Listen("tcp", "127.0.0.1:0")
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			defer c.Close() // never answers
		}
	}()
	var calls atomic.Int32
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Write([]byte(`{"leaderID":"x"}`))
	}))
	defer ok.Close()
	c, err := New(Options{Server: "http://" + downAddr + ",http://" + hung.Addr().String() + "," + ok.URL, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l, err := c.Leader(context.Background())
	if err != nil || l.LeaderID != "x" {
		t.Fatalf("leader: %+v %v", l, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	if c.Server() != ok.URL {
		t.Fatalf("last good server %s", c.Server())
	}
	start = time.Now()
	if _, err := c.Leader(context.Background()); err != nil || time.Since(start) > 200*time.Millisecond || calls.Load() != 2 {
		t.Fatalf("second call: %v in %v, %d calls", err, time.Since(start), calls.Load())
	}
	// Every server failing: the last error.
	c2, _ := New(Options{Server: "http://" + downAddr, Timeout: 200 * time.Millisecond})
	if _, err := c2.Leader(context.Background()); err == nil {
		t.Fatal("no error with no server up")
	}
}
