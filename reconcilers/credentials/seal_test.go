package credentials

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

func TestSealerRoundTripAndNothingInClear(t *testing.T) {
	t.Parallel()
	m, _, _, err := Next(nil, testutil.Cluster(t, ""), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{7}, 32)
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Encode("iot", m)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealed(b) {
		t.Fatal("not sealed")
	}
	keyBody := strings.Split(string(m.Server.KeyPEM), "\n")[1]
	for _, secret := range []string{"PRIVATE KEY", keyBody, m.Password, m.BridgePassword,
		base64.StdEncoding.EncodeToString(m.Server.KeyPEM)[:40], base64.StdEncoding.EncodeToString(m.PasswordFile)[:20]} {
		if bytes.Contains(b, []byte(secret)) {
			t.Fatalf("sealed form holds %q", secret)
		}
	}
	got, err := s.Decode("iot", b)
	if err != nil || got.Password != m.Password || string(got.Server.KeyPEM) != string(m.Server.KeyPEM) {
		t.Fatalf("round trip: %v", err)
	}
	// Two seals of the same material differ (a fresh nonce each time).
	b2, _ := s.Encode("iot", m)
	if bytes.Equal(b, b2) {
		t.Fatal("the same nonce twice")
	}
	// Plain (stored before a key was set): refused once a key is set (a
	// plain record would replace a cluster's password and CA); only the
	// one-time migration reads it.
	plain, _ := (*Sealer)(nil).Encode("iot", m)
	if IsSealed(plain) || Current(plain) {
		t.Fatal("plain taken for sealed")
	}
	if _, err := s.Decode("iot", plain); !errors.Is(err, ErrUnsealed) {
		t.Fatalf("plain with a key: %v", err)
	}
	if got, err := s.Migrate("iot", plain); err != nil || got.Password != m.Password {
		t.Fatalf("migrating a plain record: %v", err)
	}
	// Bound to its cluster: the record of iot is not the record of other.
	if _, err := s.Decode("other", b); err == nil {
		t.Fatal("a record sealed for one cluster decoded as another's")
	}
	// Sealed the old way (key only, no name): refused, migrated.
	legacy := legacySeal(t, s, m)
	if _, err := s.Decode("iot", legacy); !errors.Is(err, ErrUnsealed) {
		t.Fatalf("old format with a key: %v", err)
	}
	if got, err := s.Migrate("iot", legacy); err != nil || got.Password != m.Password {
		t.Fatalf("migrating an old-format record: %v", err)
	}
	// An old-format record of another key: the key is what to fix.
	if _, err := other(t).Decode("iot", legacy); !errors.Is(err, ErrSealed) {
		t.Fatalf("old format, another key: %v", err)
	}
	// Sealed, without the key or with another: a clear error, no content.
	if _, err := (*Sealer)(nil).Decode("iot", b); !errors.Is(err, ErrSealed) {
		t.Fatalf("no key: %v", err)
	}
	other, _ := NewSealer(bytes.Repeat([]byte{8}, 32))
	if _, err := other.Decode("iot", b); !errors.Is(err, ErrSealed) || strings.Contains(err.Error(), m.Password) {
		t.Fatalf("another key: %v", err)
	}
	// Damaged: authentication fails.
	tampered := bytes.Replace(b, []byte(`"data":"`), []byte(`"data":"AAAA`), 1)
	if _, err := s.Decode("iot", tampered); err == nil {
		t.Fatal("a damaged record decoded")
	}
}

func TestLoadKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := bytes.Repeat([]byte{0xab}, 32)
	for name, content := range map[string][]byte{
		"raw": key, "hex": []byte(hex.EncodeToString(key) + "\n"), "b64": []byte(base64.StdEncoding.EncodeToString(key) + "\n"),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o600)
		got, err := LoadKeyFile(p)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("%s: %x %v", name, got, err)
		}
	}
	p := filepath.Join(dir, "short")
	os.WriteFile(p, []byte("secret-too-short"), 0o600)
	if _, err := LoadKeyFile(p); err == nil || strings.Contains(err.Error(), "secret-too-short") {
		t.Fatalf("short key: %v", err)
	}
}

// legacySeal seals m the way records were sealed before they were bound
// to their cluster (associated data: the key id only).
func legacySeal(t *testing.T, s *Sealer, m Material) []byte {
	t.Helper()
	plain, _ := json.Marshal(m)
	var out sealed
	out.Sealed.KeyID = s.keyID
	out.Sealed.Nonce = make([]byte, s.aead.NonceSize())
	out.Sealed.Data = s.aead.Seal(nil, out.Sealed.Nonce, plain, []byte(s.keyID))
	b, _ := json.Marshal(out)
	return b
}

func other(t *testing.T) *Sealer {
	t.Helper()
	o, err := NewSealer(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return o
}
