package credentials

import (
	"strings"
	"testing"
)

func TestPasswordLineFormat(t *testing.T) {
	t.Parallel()
	line, err := PasswordLine("alice", "wonderland")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(line, "$")
	if !strings.HasPrefix(line, "alice:$7$101$") || len(parts) != 5 || len(parts[3]) != 16 || len(parts[4]) != 88 {
		t.Fatalf("not a mosquitto $7$ line: %q", line)
	}
	if strings.Contains(line, "wonderland") {
		t.Fatal("the password is in the file")
	}
	again, _ := PasswordLine("alice", "wonderland")
	if again == line {
		t.Fatal("two hashes of one password share a salt")
	}
	for _, bad := range []string{"", "a:b", "a\nb"} {
		if _, err := PasswordLine(bad, "x"); err == nil {
			t.Errorf("user %q accepted", bad)
		}
	}
	if p := NewPassword(); len(p) != 32 || p == NewPassword() {
		t.Fatalf("password %q", p)
	}
}
