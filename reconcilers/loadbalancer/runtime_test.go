package loadbalancer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRuntime answers like HAProxy 2.6's stats socket (answers copied from
// a real one) and records the commands it got.
type fakeRuntime struct {
	mu       sync.Mutex
	cmds     []string
	serial   string
	pending  string
	failSet  bool
	listener net.Listener
}

func startFakeRuntime(t *testing.T, serial string) *fakeRuntime {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRuntime{serial: serial, listener: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(c)
			c.Write([]byte(f.answer(string(b))))
			c.Close()
		}
	}()
	return f
}

func (f *fakeRuntime) answer(cmd string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, cmd)
	line, _, _ := strings.Cut(cmd, "\n")
	switch {
	case line == "show ssl cert "+CertPath:
		return "Filename: " + CertPath + "\nStatus: Used\nSerial: " + f.serial + "\nnotBefore: Nov 27 12:02:46 2026 GMT\nnotAfter: Nov 28 12:02:46 2026 GMT\n\n"
	case line == "set ssl cert "+CertPath+" <<":
		if f.failSet {
			return "unable to load certificate from file '" + CertPath + "'.\n\n"
		}
		sc := bufio.NewScanner(strings.NewReader(cmd))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "SERIAL "); ok {
				f.pending = v
			}
		}
		return "Transaction created for certificate " + CertPath + "!\n\n"
	case line == "commit ssl cert "+CertPath:
		f.serial = f.pending
		return "\nCommitting " + CertPath + ".\nSuccess!\n\n"
	}
	return "Unknown command.\n\n"
}

func TestRuntimeServedSerialAndPush(t *testing.T) {
	f := startFakeRuntime(t, "00C4A1")
	rt := Runtime{}
	addr := f.listener.Addr().String()
	got, err := rt.ServedCertificate(context.Background(), addr)
	if err != nil || got.Serial.Text(16) != "c4a1" || !got.NotAfter.Equal(time.Date(2026, 11, 28, 12, 2, 46, 0, time.UTC)) {
		t.Fatalf("served = %+v, %v; want serial c4a1, notAfter 2026-11-28 12:02:46", got, err)
	}
	// The fake takes the "SERIAL" line of the payload as the new serial.
	pem := "-----BEGIN CERTIFICATE-----\nSERIAL 0BEE\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n"
	if err := rt.PushCertificate(context.Background(), addr, []byte(pem)); err != nil {
		t.Fatal(err)
	}
	if got, _ := rt.ServedCertificate(context.Background(), addr); got.Serial.Text(16) != "bee" {
		t.Fatalf("after push serial = %v, want bee", got.Serial)
	}
	f.mu.Lock()
	set := f.cmds[1]
	f.mu.Unlock()
	// The payload is ended by one empty line, and has none inside.
	if !strings.HasSuffix(set, "-----END PRIVATE KEY-----\n\n") || strings.Count(set, "\n\n") != 1 {
		t.Errorf("payload framing: %q", set)
	}
}

func TestRuntimeErrorsNeverQuoteTheKey(t *testing.T) {
	f := startFakeRuntime(t, "01")
	f.failSet = true
	pem := "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"
	err := Runtime{}.PushCertificate(context.Background(), f.listener.Addr().String(), []byte(pem))
	if !errors.Is(err, ErrRuntime) {
		t.Fatalf("err = %v, want ErrRuntime", err)
	}
	if strings.Contains(err.Error(), "PRIVATE") || strings.Contains(err.Error(), "MIGHAgEA") {
		t.Fatalf("error quotes the key: %v", err)
	}
	if firstLine("-----BEGIN PRIVATE KEY-----\nabc") != "(answer withheld)" {
		t.Error("an answer carrying PEM is quoted")
	}
}

func TestRuntimeUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if _, err := (Runtime{}).ServedCertificate(context.Background(), addr); err == nil {
		t.Fatal("no error from a closed port")
	}
}

func TestParseServed(t *testing.T) {
	if _, err := parseServed("Can't display the certificate: Not found or the certificate is a bundle!\n"); !errors.Is(err, ErrRuntime) {
		t.Errorf("missing serial: %v", err)
	}
	if _, err := parseServed("Serial: XYZ\n"); !errors.Is(err, ErrRuntime) {
		t.Errorf("bad serial: %v", err)
	}
	if _, err := parseServed("Serial: 01\nnotAfter: tomorrow\n"); !errors.Is(err, ErrRuntime) {
		t.Errorf("bad notAfter: %v", err)
	}
	s, err := parseServed("Serial: 01\nnotAfter: Feb  5 02:06:49 2027 GMT\n")
	if err != nil || !s.NotAfter.Equal(time.Date(2027, 2, 5, 2, 6, 49, 0, time.UTC)) {
		t.Errorf("single-digit day: %+v %v", s, err)
	}
}

func TestParseSessions(t *testing.T) {
	// Lines as HAProxy 2.6's "show sess" writes them (trimmed after the age).
	out := "0x5622a1: proto=tcpv4 src=10.0.0.2:4711 fe=mqtts be=brokers srv=broker-1 ts=00 epoch=0 age=0s calls=3 rate=0\n" +
		"0x5622a2: proto=tcpv4 src=10.0.0.2:4712 fe=mqtts be=brokers srv=broker-1 ts=00 epoch=0 age=59s calls=3 rate=0\n" +
		"0x5622a3: proto=tcpv4 src=10.0.0.2:4713 fe=mqtt be=brokers srv=broker-1 ts=00 epoch=0 age=2m5s calls=9 rate=0\n" +
		"0x5622a4: proto=tcpv4 src=10.0.0.2:4714 fe=mqtt be=brokers srv=broker-10 ts=00 epoch=0 age=1s calls=9 rate=0\n" +
		"0x5622a5: proto=unix_stream src=unix:1 fe=GLOBAL be=<NONE> srv=<none> ts=00 epoch=0 age=0s calls=1\n"
	got := parseSessions(out, "broker-1")
	want := []session{{"0x5622a1", 0}, {"0x5622a2", 59 * time.Second}, {"0x5622a3", time.Hour}}
	if len(got) != len(want) {
		t.Fatalf("sessions = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("session %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseBackendSessions(t *testing.T) {
	t.Parallel()
	out := "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,\n" +
		"stats,BACKEND,0,0,0,1,400,3,0,0,\n" +
		BackendName + ",BACKEND,0,0,1234,2000,10000,9999,0,0,\n\n"
	if n, err := parseBackendSessions(out); err != nil || n != 1234 {
		t.Fatalf("got %d %v", n, err)
	}
	for _, bad := range []string{"", "Unknown command\n", "# pxname,svname\nbrokers,BACKEND\n", "# pxname,svname,scur\nother,BACKEND,3\n"} {
		if _, err := parseBackendSessions(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseServerStates(t *testing.T) {
	out := `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 brokers 1 broker-0 10.0.1.63 2 0 1 1 5 6 3 4 6 0 0 0 tasks.nl-broker-0 1883 - 0 0 - - 0
3 brokers 2 broker-1 - 0 0 1 1 5 6 3 4 6 0 0 0 tasks.nl-broker-1 1883 - 0 0 - - 0
4 stats 1 other 10.0.0.1 2 0 1 1 5 6 3 4 6 0 0 0 - 1883 - 0 0 - - 0
`
	got := parseServerStates(out)
	if len(got) != 2 || got["broker-0"] != (ServerState{"10.0.1.63", true}) || got["broker-1"] != (ServerState{"-", false}) {
		t.Fatalf("states: %v", got)
	}
}
