package credentials

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"strings"
)

// Mosquitto 2.0's password hash ("$7$"): PBKDF2-HMAC-SHA512 with a 12-byte
// salt and a 64-byte key, the same as mosquitto_passwd writes.
const (
	pbkdf2Iterations = 101
	saltLen          = 12
	hashLen          = 64
)

// PasswordLine returns one line of a Mosquitto password file for user.
// The password never appears in the error.
func PasswordLine(user, password string) (string, error) {
	if user == "" || strings.ContainsAny(user, ":\n") {
		return "", fmt.Errorf("user name %q: must be non-empty, without ':' or newlines", user)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	return passwordLine(user, password, salt)
}

func passwordLine(user, password string, salt []byte) (string, error) {
	key, err := pbkdf2.Key(sha512.New, password, salt, pbkdf2Iterations, hashLen)
	if err != nil {
		return "", fmt.Errorf("hash password of %s failed", user)
	}
	b64 := base64.StdEncoding
	return fmt.Sprintf("%s:$7$%d$%s$%s", user, pbkdf2Iterations, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// NewPassword returns a random password of 32 URL-safe characters.
func NewPassword() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
