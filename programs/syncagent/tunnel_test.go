package syncagent

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/tlsutil"
)

func syncPeer(t *testing.T, ca *tlsutil.CA, caPEM []byte, cluster string) *tlsutil.Peer {
	t.Helper()
	dir := t.TempDir()
	cert, key, err := ca.IssueComponent(tlsutil.Sync, cluster, nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tls.pem"), append(cert, key...), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.crt"), caPEM, 0o644)
	p, err := tlsutil.LoadPeer(filepath.Join(dir, "tls.pem"), filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRsyncTunnel: the tunnel lets in only an agent of the same cluster
// (a certificate from the control-plane CA naming it), hands the daemon a
// PROXY header with the peer's real address, and relays both ways with
// half closes; another cluster's agent, another CA and plain TCP get
// nothing through.
func TestRsyncTunnel(t *testing.T) {
	t.Parallel()
	bundle, _ := tlsutil.NewCA("control", time.Now())
	ca, _ := tlsutil.ParseCA(bundle)
	otherBundle, _ := tlsutil.NewCA("other", time.Now())
	other, _ := tlsutil.ParseCA(otherBundle)
	me := syncPeer(t, ca, ca.CertPEM(), "iot")

	// The "daemon": records the first line, then echoes in upper case.
	daemon, _ := net.Listen("tcp", "127.0.0.1:0")
	defer daemon.Close()
	headers := make(chan string, 8)
	go func() {
		for {
			c, err := daemon.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				h, _ := r.ReadString('\n')
				headers <- h
				b, _ := io.ReadAll(r)
				c.Write([]byte(strings.ToUpper(string(b))))
			}()
		}
	}()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go ServeTunnel(context.Background(), ln, me.ServerConfig(true), daemon.Addr().String(), slog.New(slog.NewTextHandler(io.Discard, nil)))

	// A peer of the same cluster: through, with its address in the header.
	peer := syncPeer(t, ca, ca.CertPEM(), "iot")
	var out strings.Builder
	if err := Connect(ln.Addr().String(), peer.ClientConfig(), strings.NewReader("@rsyncd: hello"), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "@RSYNCD: HELLO" {
		t.Fatalf("relayed %q", out.String())
	}
	if h := <-headers; !strings.HasPrefix(h, "PROXY TCP4 127.0.0.1 127.0.0.1 ") {
		t.Fatalf("header %q", h)
	}

	refused := map[string]*tls.Config{
		"another cluster's agent": syncPeer(t, ca, ca.CertPEM(), "other").ClientConfig(),
		"another CA's agent":      syncPeer(t, other, other.CertPEM(), "iot").ClientConfig(),
	}
	noCert := tlsutil.Base()
	noCert.InsecureSkipVerify = true
	refused["no certificate"] = noCert
	for name, cfg := range refused {
		var out strings.Builder
		err := Connect(ln.Addr().String(), cfg, strings.NewReader("@rsyncd: hello"), &out)
		if err == nil && out.Len() > 0 {
			t.Errorf("%s: got through (%q)", name, out.String())
		}
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err == nil {
		c.Write([]byte("@RSYNCD: 31.0\n"))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		if strings.Contains(string(b), "@RSYNCD") {
			t.Errorf("plain TCP got an answer: %q", b)
		}
	}
	select {
	case h := <-headers:
		t.Fatalf("a refused connection reached the daemon (%q)", h)
	default:
	}
}
