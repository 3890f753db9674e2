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

// sealed is the stored form: which key, the nonce, the ciphertext.
type sealed struct {
	Sealed struct {
		KeyID string `json:"keyID"`
		Nonce []byte `json:"nonce"`
		Data  []byte `json:"data"`
	} `json:"sealed"`
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

// Encode is the stored form of m: encrypted when s has a key.
func (s *Sealer) Encode(m Material) ([]byte, error) {
	plain, err := json.Marshal(m)
	if err != nil {
		return nil, errors.New("encode credentials failed")
	}
	if s == nil {
		return plain, nil
	}
	var out sealed
	out.Sealed.KeyID = s.keyID
	out.Sealed.Nonce = make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(out.Sealed.Nonce); err != nil {
		return nil, err
	}
	out.Sealed.Data = s.aead.Seal(nil, out.Sealed.Nonce, plain, []byte(s.keyID))
	return json.Marshal(out)
}

// Decode reads stored material, sealed or plain (a store written before a
// key was set is read, and sealed on its next write).
func (s *Sealer) Decode(b []byte) (Material, error) {
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
	plain, err := s.aead.Open(nil, in.Sealed.Nonce, in.Sealed.Data, []byte(s.keyID))
	if err != nil {
		return Material{}, errors.New("stored credentials fail authentication: damaged, or sealed with another key")
	}
	if err := json.Unmarshal(plain, &m); err != nil {
		return Material{}, errors.New("stored credentials are unreadable")
	}
	return m, nil
}
