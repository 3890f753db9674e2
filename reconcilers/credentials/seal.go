package credentials

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Sealer encrypts a cluster's material before it is stored, with
// AES-256-GCM and a key the operator reads from a Docker secret: the raft
// log, its snapshots and backups then hold no private key or password in
// clear. A nil Sealer stores the material as plain JSON.
type Sealer struct {
	aead  cipher.AEAD
	keyID string
}

// sealed is the stored form: which key, the nonce, the ciphertext. V 2
// binds the record to its kind and name (the AEAD's associated data), so
// a record cannot be moved to another cluster; records without V were
// sealed before that (bound to the key only) and are read only by
// Migrate.
type sealed struct {
	Sealed struct {
		V     int    `json:"v,omitempty"`
		KeyID string `json:"keyID"`
		Nonce []byte `json:"nonce"`
		Data  []byte `json:"data"`
	} `json:"sealed"`
}

// sealVersion is the current sealed record version.
const sealVersion = 2

// ErrUnsealed: a key is configured and the record is stored in clear (or
// sealed the old way): refused, so that nobody can replace a cluster's
// password or CA by writing a plain record. The one-time migration
// (Migrate) seals the records written before the key was set.
var ErrUnsealed = errors.New("stored credentials are not sealed with the current format while an encryption key is set: refused")

// recordKind is the store kind of the records sealed here (the objects
// layer's KindCredentials), bound into every sealed record: it never
// changes.
const recordKind = "MqttClusterCredentials"

// associated is the AEAD's associated data of a record: its key, kind and
// name.
func (s *Sealer) associated(name string) []byte {
	return []byte(fmt.Sprintf("v%d|%s|%s|%s", sealVersion, s.keyID, recordKind, name))
}

// ErrSealed: the material is encrypted and this operator has no key, or
// another key.
var ErrSealed = errors.New("stored credentials are encrypted with another key")

// NewSealer makes a Sealer from a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("encryption key: want 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(key)
	return &Sealer{aead: aead, keyID: hex.EncodeToString(sum[:4])}, nil
}

// LoadKeyFile reads a key file: 32 raw bytes, 64 hex digits or the base64
// of 32 bytes (surrounding white space ignored). Errors never quote it.
func LoadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("encryption key file: %w", err)
	}
	if len(b) == 32 {
		return b, nil
	}
	t := bytes.TrimSpace(b)
	if k, err := hex.DecodeString(string(t)); err == nil && len(k) == 32 {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(string(t)); err == nil && len(k) == 32 {
		return k, nil
	}
	return nil, errors.New("encryption key file: want 32 bytes, raw, as 64 hex digits or in base64")
}

// KeyID names the key (a hash prefix): it tells a wrong key from a
// damaged record.
func (s *Sealer) KeyID() string {
	if s == nil {
		return ""
	}
	return s.keyID
}

// IsSealed reports whether stored bytes are encrypted.
func IsSealed(b []byte) bool {
	var probe sealed
	return json.Unmarshal(b, &probe) == nil && probe.Sealed.KeyID != ""
}

// Encode is the stored form of cluster name's material m: encrypted and
// bound to the name when s has a key.
func (s *Sealer) Encode(name string, m Material) ([]byte, error) {
	plain, err := json.Marshal(m)
	if err != nil {
		return nil, errors.New("encode credentials failed")
	}
	if s == nil {
		return plain, nil
	}
	var out sealed
	out.Sealed.V = sealVersion
	out.Sealed.KeyID = s.keyID
	out.Sealed.Nonce = make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(out.Sealed.Nonce); err != nil {
		return nil, err
	}
	out.Sealed.Data = s.aead.Seal(nil, out.Sealed.Nonce, plain, s.associated(name))
	return json.Marshal(out)
}

// Current reports whether stored bytes are sealed the current way (no
// migration needed).
func Current(b []byte) bool {
	var probe sealed
	return json.Unmarshal(b, &probe) == nil && probe.Sealed.KeyID != "" && probe.Sealed.V == sealVersion
}

// Decode reads cluster name's stored material. With no key, plain
// records are read and sealed ones refused (ErrSealed); with a key, only
// records sealed the current way for this name are read: a plain one, or
// one sealed the old way, is refused (ErrUnsealed), and one sealed for
// another cluster fails authentication.
func (s *Sealer) Decode(name string, b []byte) (Material, error) {
	if s != nil && !Current(b) {
		var in sealed
		if IsSealed(b) && json.Unmarshal(b, &in) == nil && in.Sealed.KeyID != s.keyID {
			// Another key's record says so first: that is what to fix.
			return Material{}, fmt.Errorf("%w: sealed with key %s, this operator has key %s", ErrSealed, in.Sealed.KeyID, s.keyID)
		}
		return Material{}, ErrUnsealed
	}
	return s.decode(name, b)
}

// Migrate reads a record written before the current format (plain, or
// sealed without the name): for the one-time migration that seals them.
func (s *Sealer) Migrate(name string, b []byte) (Material, error) { return s.decode(name, b) }

func (s *Sealer) decode(name string, b []byte) (Material, error) {
	var m Material
	if !IsSealed(b) {
		if err := json.Unmarshal(b, &m); err != nil {
			return Material{}, errors.New("stored credentials are unreadable")
		}
		return m, nil
	}
	var in sealed
	_ = json.Unmarshal(b, &in)
	if s == nil {
		return Material{}, fmt.Errorf("%w: start the operator with --encryption-key-file (key %s)", ErrSealed, in.Sealed.KeyID)
	}
	if in.Sealed.KeyID != s.keyID {
		return Material{}, fmt.Errorf("%w: sealed with key %s, this operator has key %s", ErrSealed, in.Sealed.KeyID, s.keyID)
	}
	ad := s.associated(name)
	if in.Sealed.V == 0 {
		ad = []byte(s.keyID) // the format before names were bound
	}
	plain, err := s.aead.Open(nil, in.Sealed.Nonce, in.Sealed.Data, ad)
	if err != nil {
		return Material{}, errors.New("stored credentials fail authentication: damaged, sealed with another key, or sealed for another cluster")
	}
	if err := json.Unmarshal(plain, &m); err != nil {
		return Material{}, errors.New("stored credentials are unreadable")
	}
	return m, nil
}
