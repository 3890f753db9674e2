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
