package loadbalancer

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Runtime speaks HAProxy's runtime API (the stats socket, reached over the
// admin frontend on AdminPort) to one HAProxy task at a time. It is how a
// renewed certificate reaches running HAProxy processes with no restart:
// `set ssl cert` + `commit ssl cert` swap the certificate of the live
// `bind ... ssl crt` listener; established TLS sessions are untouched and
// the next handshake gets the new certificate.
type Runtime struct {
	// Timeout bounds each command (connect, send, read). Default 2s.
	Timeout time.Duration
	// TLS, when set, is the client configuration of the runtime API's
	// mutual TLS (the operator's certificate, the cluster's admin
	// certificate expected); nil: plain TCP.
	TLS *tls.Config
}

// ErrRuntime is returned when HAProxy answers a command with a failure.
var ErrRuntime = errors.New("haproxy runtime API")

func (rt Runtime) timeout() time.Duration {
	if rt.Timeout > 0 {
		return rt.Timeout
	}
	return 2 * time.Second
}

// exec sends one command (one connection: the stats socket's
// non-interactive mode answers and closes) and returns the answer.
func (rt Runtime) exec(ctx context.Context, addr, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, rt.timeout())
	defer cancel()
	var conn net.Conn
	var err error
	if rt.TLS != nil {
		conn, err = (&tls.Dialer{Config: rt.TLS}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", err
	}
	// The end of the command: HAProxy answers it and closes (the stats
	// socket's non-interactive mode).
	switch c := conn.(type) {
	case *net.TCPConn:
		_ = c.CloseWrite()
	case *tls.Conn:
		_ = c.CloseWrite()
	}
	b, err := io.ReadAll(io.LimitReader(conn, 1<<20))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// Served is what HAProxy says of the certificate it serves.
type Served struct {
	Serial   *big.Int
	NotAfter time.Time
}

// ServedCertificate describes the certificate HAProxy serves from
// CertPath (the committed one, not a pending transaction).
func (rt Runtime) ServedCertificate(ctx context.Context, addr string) (Served, error) {
	out, err := rt.exec(ctx, addr, "show ssl cert "+CertPath+"\n")
	if err != nil {
		return Served{}, err
	}
	return parseServed(out)
}

func parseServed(out string) (Served, error) {
	var s Served
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Serial":
			n, ok := new(big.Int).SetString(v, 16)
			if !ok {
				return Served{}, fmt.Errorf("%w: unreadable serial %q", ErrRuntime, v)
			}
			s.Serial = n
		case "notAfter":
			// OpenSSL's ASN1_TIME_print form: "Feb 25 12:06:49 2027 GMT".
			t, err := time.Parse("Jan _2 15:04:05 2006 MST", v)
			if err != nil {
				return Served{}, fmt.Errorf("%w: unreadable notAfter %q", ErrRuntime, v)
			}
			s.NotAfter = t.UTC()
		}
	}
	if s.Serial == nil {
		return Served{}, fmt.Errorf("%w: no serial in the answer to show ssl cert: %s", ErrRuntime, firstLine(out))
	}
	return s, nil
}

// PushCertificate makes HAProxy serve pem (certificate chain and private
// key) for CertPath from the next handshake on. Errors never quote pem.
func (rt Runtime) PushCertificate(ctx context.Context, addr string, pem []byte) error {
	// A payload ends at the first empty line: PEM has none.
	payload := strings.TrimRight(string(pem), "\n")
	out, err := rt.exec(ctx, addr, "set ssl cert "+CertPath+" <<\n"+payload+"\n\n")
	if err != nil {
		return fmt.Errorf("set ssl cert: %w", err)
	}
	if !strings.Contains(out, "Transaction created") && !strings.Contains(out, "Transaction updated") {
		return fmt.Errorf("%w: set ssl cert: %s", ErrRuntime, firstLine(out))
	}
	out, err = rt.exec(ctx, addr, "commit ssl cert "+CertPath+"\n")
	if err != nil {
		return fmt.Errorf("commit ssl cert: %w", err)
	}
	if !strings.Contains(out, "Success!") {
		return fmt.Errorf("%w: commit ssl cert: %s", ErrRuntime, firstLine(out))
	}
	return nil
}

// firstLine keeps an answer short in an error, and never carries PEM.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if strings.Contains(l, "-----") || strings.Contains(l, "PRIVATE") {
			return "(answer withheld)"
		}
		if len(l) > 200 {
			l = l[:200]
		}
		return strconv.Quote(l)
	}
	return "(empty answer)"
}

// AdminAddr is the runtime API address of a task at ip.
func AdminAddr(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(AdminPort)) }

// srvAdmFDrain is HAProxy's "forced drain" admin state bit (set by the
// runtime API's "set server ... state drain").
const srvAdmFDrain = 0x08

// DrainedServers lists the brokers backend's servers put in drain through
// the runtime API, by server name.
func (rt Runtime) DrainedServers(ctx context.Context, addr string) (map[string]bool, error) {
	out, err := rt.exec(ctx, addr, "show servers state "+BackendName+"\n")
	if err != nil {
		return nil, fmt.Errorf("show servers state: %w", err)
	}
	drained := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		// be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
		if len(f) < 7 || f[1] != BackendName {
			continue
		}
		if adm, err := strconv.Atoi(f[6]); err == nil && adm&srvAdmFDrain != 0 {
			drained[f[3]] = true
		}
	}
	return drained, nil
}

// ServerState is where HAProxy sends a broker server's connections (its
// resolved address, "-" for none) and whether its checks have it up.
type ServerState struct {
	Addr string
	Up   bool
}

// ServerStates lists the brokers backend's servers, by name.
func (rt Runtime) ServerStates(ctx context.Context, addr string) (map[string]ServerState, error) {
	out, err := rt.exec(ctx, addr, "show servers state "+BackendName+"\n")
	if err != nil {
		return nil, fmt.Errorf("show servers state: %w", err)
	}
	return parseServerStates(out), nil
}

func parseServerStates(out string) map[string]ServerState {
	states := map[string]ServerState{}
	for _, l := range strings.Split(out, "\n") {
		// be_id be_name srv_id srv_name srv_addr srv_op_state ...
		// (op state 0: stopped, i.e. down; 2: running)
		if f := strings.Fields(l); len(f) >= 6 && f[1] == BackendName {
			states[f[3]] = ServerState{Addr: f[4], Up: f[5] != "0"}
		}
	}
	return states
}

// SetServerHealthUp marks a broker server up at once, ahead of HAProxy's
// next check of a server it has down (one a second): for a server whose
// new task the operator has just reached. The checks go on: three failed
// in a row mark it down again.
func (rt Runtime) SetServerHealthUp(ctx context.Context, addr, server string) error {
	out, err := rt.exec(ctx, addr, "set server "+BackendName+"/"+server+" health up\n")
	if err != nil {
		return fmt.Errorf("set server health: %w", err)
	}
	if s := strings.TrimSpace(out); s != "" {
		return fmt.Errorf("%w: set server %s health up: %s", ErrRuntime, server, firstLine(out))
	}
	return nil
}

// SetServerAddr points a broker server at ip: the address of the task
// that runs the broker now, which Swarm's DNS may not name yet, or names
// beside the address of a task on a lost node (HAProxy keeps a resolved
// address for as long as the DNS answer still holds it).
func (rt Runtime) SetServerAddr(ctx context.Context, addr, server, ip string) error {
	out, err := rt.exec(ctx, addr, "set server "+BackendName+"/"+server+" addr "+ip+"\n")
	if err != nil {
		return fmt.Errorf("set server addr: %w", err)
	}
	if s := strings.TrimSpace(out); !strings.Contains(s, "changed from") && !strings.Contains(s, "no need to change") {
		return fmt.Errorf("%w: set server %s addr %s: %s", ErrRuntime, server, ip, firstLine(out))
	}
	return nil
}

// SetServerState sets a broker server's admin state: "drain" (no new
// connection; HAProxy's hash skips it) or "ready".
func (rt Runtime) SetServerState(ctx context.Context, addr, server, state string) error {
	out, err := rt.exec(ctx, addr, "set server "+BackendName+"/"+server+" state "+state+"\n")
	if err != nil {
		return fmt.Errorf("set server state: %w", err)
	}
	if s := strings.TrimSpace(out); s != "" {
		return fmt.Errorf("%w: set server %s state %s: %s", ErrRuntime, server, state, firstLine(out))
	}
	return nil
}

// session is one stream HAProxy holds to a broker server.
type session struct {
	id  string
	age time.Duration // whole seconds; a minute or more reads as an hour
}

// sessions lists the streams HAProxy holds to a broker server (those
// still connecting to it too).
func (rt Runtime) sessions(ctx context.Context, addr, server string) ([]session, error) {
	out, err := rt.exec(ctx, addr, "show sess\n")
	if err != nil {
		return nil, fmt.Errorf("show sess: %w", err)
	}
	return parseSessions(out, server), nil
}

func parseSessions(out, server string) []session {
	want := " be=" + BackendName + " srv=" + server + " "
	var ss []session
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l+" ", want) {
			continue
		}
		id, rest, ok := strings.Cut(l, ":")
		if !ok || !strings.HasPrefix(id, "0x") {
			continue
		}
		s := session{id: id, age: time.Hour}
		for _, f := range strings.Fields(rest) {
			// "age=12s", or "age=3m4s", "age=1h2m", "age=2d3h" past a minute.
			if v, ok := strings.CutPrefix(f, "age="); ok {
				if n, err := strconv.Atoi(strings.TrimSuffix(v, "s")); err == nil && strings.HasSuffix(v, "s") {
					s.age = time.Duration(n) * time.Second
				}
			}
		}
		ss = append(ss, s)
	}
	return ss
}

// ShutdownSessions closes the client sessions HAProxy holds to a broker
// server, at most rate per second, for at most budget: drained first, the
// clients reconnect to the other brokers a few at a time instead of all at
// once when the broker stops. fence runs before each close (the operator
// must still lead): its error stops the closing and is returned. It
// returns how many it closed.
func (rt Runtime) ShutdownSessions(ctx context.Context, addr, server string, rate int, budget time.Duration, fence func() error) (int, error) {
	ss, err := rt.sessions(ctx, addr, server)
	if err != nil {
		return 0, err
	}
	gap := time.Second / time.Duration(max(rate, 1))
	deadline := time.Now().Add(budget)
	closed := 0
	for _, s := range ss {
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		if err := fence(); err != nil {
			return closed, err
		}
		if _, err := rt.exec(ctx, addr, "shutdown session "+s.id+"\n"); err == nil {
			closed++
		}
		select {
		case <-ctx.Done():
		case <-time.After(gap):
		}
	}
	return closed, nil
}

// ShutdownYoungSessions closes, at once, the streams to a broker server
// that are younger than maxAge. When a broker dies, its established
// sessions end with it; what is left are clients that came back at once
// and were sent to it again, waiting out the connect timeout on an
// address that answers nothing: closed, they try again and land on
// another broker. (Were the broker alive after all, only its newest
// clients reconnect.) fence runs before each close, as for
// ShutdownSessions. It returns how many it closed.
func (rt Runtime) ShutdownYoungSessions(ctx context.Context, addr, server string, maxAge time.Duration, fence func() error) (int, error) {
	ss, err := rt.sessions(ctx, addr, server)
	if err != nil {
		return 0, err
	}
	closed := 0
	for _, s := range ss {
		if s.age >= maxAge || ctx.Err() != nil {
			continue
		}
		if err := fence(); err != nil {
			return closed, err
		}
		if _, err := rt.exec(ctx, addr, "shutdown session "+s.id+"\n"); err == nil {
			closed++
		}
	}
	return closed, nil
}

// Connections is how many client streams the task holds to the brokers
// now: the brokers backend's current sessions (show stat's scur).
func (rt Runtime) Connections(ctx context.Context, addr string) (int64, error) {
	out, err := rt.exec(ctx, addr, "show stat -1 2 -1\n")
	if err != nil {
		return 0, fmt.Errorf("show stat: %w", err)
	}
	return parseBackendSessions(out)
}

// parseBackendSessions reads the brokers backend's scur from show stat's
// CSV (the header names the columns).
func parseBackendSessions(out string) (int64, error) {
	lines := strings.Split(out, "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") {
		return 0, fmt.Errorf("%w: show stat: %s", ErrRuntime, firstLine(out))
	}
	col := slices.Index(strings.Split(strings.TrimPrefix(lines[0], "# "), ","), "scur")
	if col < 0 {
		return 0, fmt.Errorf("%w: show stat: no scur column", ErrRuntime)
	}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) > col && f[0] == BackendName && f[1] == "BACKEND" {
			return strconv.ParseInt(f[col], 10, 64)
		}
	}
	return 0, fmt.Errorf("%w: show stat: no %s backend", ErrRuntime, BackendName)
}
