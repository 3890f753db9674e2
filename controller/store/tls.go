package store

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// handshakeTimeout bounds a TLS handshake on the raft port: a peer that
// connects and says nothing does not hold a connection for long.
const handshakeTimeout = 10 * time.Second

// tlsStreamLayer is raft's transport over mutual TLS (as Nomad's
// RaftLayer wraps its raft stream): a peer without a certificate the
// server config accepts cannot connect, so it cannot append, vote or
// install a snapshot.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
}

func newTLSStreamLayer(bind string, advertise net.Addr, server, client *tls.Config) (*tlsStreamLayer, error) {
	if server == nil || client == nil {
		return nil, errors.New("store: raft TLS needs a server and a client config")
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	return &tlsStreamLayer{ln: ln, advertise: advertise, server: server, client: client}, nil
}

// Accept hands raft a connection whose handshake runs (bounded by
// handshakeTimeout) on its first read or write, in raft's per-connection
// goroutine: one slow peer never blocks the accept loop.
func (l *tlsStreamLayer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: tls.Server(c, l.server)}, nil
}

func (l *tlsStreamLayer) Close() error   { return l.ln.Close() }
func (l *tlsStreamLayer) Addr() net.Addr { return l.advertise }

// Dial connects to another server and verifies it: a certificate from the
// CA, valid for the address dialed, naming an operator.
func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, err
	}
	cfg := l.client.Clone()
	cfg.ServerName = host
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	return d.DialContext(ctx, "tcp", string(address))
}

type handshakeConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *handshakeConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		c.err = c.Conn.HandshakeContext(ctx)
		if c.err != nil {
			c.Conn.Close()
		}
	})
	return c.err
}

func (c *handshakeConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *handshakeConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
