//go:build e2e

package credentials

import (
	"os/exec"
	"testing"
	"time"
)

// TestRealMosquittoAcceptsOurPasswordFile: the real broker authenticates a
// user from a file written by PasswordLine, and refuses a wrong password.
func TestRealMosquittoAcceptsOurPasswordFile(t *testing.T) {
	pw := NewPassword()
	line, err := PasswordLine("bob", pw)
	if err != nil {
		t.Fatal(err)
	}
	ctr := "swarm-mqtt-e2e-passwd"
	_ = exec.Command("docker", "rm", "-f", ctr).Run()
	out, err := exec.Command("docker", "run", "-d", "--name", ctr, "swarm-mqtt/mosquitto:local", "sh", "-c",
		"printf '%s\\n' '"+line+"' > /tmp/pw && chown mosquitto /tmp/pw && chmod 0600 /tmp/pw && "+
			"printf 'listener 1883 127.0.0.1\\nallow_anonymous false\\npassword_file /tmp/pw\\n' > /tmp/m.conf && exec mosquitto -c /tmp/m.conf").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", ctr).Run() })
	pub := func(pass string) error {
		return exec.Command("docker", "exec", ctr, "mosquitto_pub", "-h", "127.0.0.1", "-u", "bob", "-P", pass, "-t", "t", "-m", "m").Run()
	}
	deadline := time.Now().Add(15 * time.Second)
	for pub(pw) != nil {
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", ctr).CombinedOutput()
			t.Fatalf("mosquitto refuses our password file:\n%s", logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pub(pw+"x") == nil {
		t.Fatal("a wrong password was accepted")
	}
}
