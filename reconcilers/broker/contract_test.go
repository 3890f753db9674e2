package broker

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestContractCheck runs the broker command's contract check under a real
// /bin/sh, with a fake mosquitto of each version (or none) on the PATH.
func TestContractCheck(t *testing.T) {
	for _, tc := range []struct {
		name, version string // version "": no mosquitto at all
		ok            bool
		why           string
	}{
		{"none", "", false, "no mosquitto in this image"},
		{"2.0.11", "mosquitto version 2.0.11", false, "Mosquitto 2.0.11 in this image is older than 2.0.13"},
		{"1.6.15", "mosquitto version 1.6.15", false, "older than 2.0.13"},
		{"unknown", "mosquitto, some build", false, "of unknown version"},
		{"2.0.13", "mosquitto version 2.0.13", true, ""},
		{"2.0.21", "mosquitto version 2.0.21", true, ""},
		{"2.1.0", "mosquitto version 2.1.0", true, ""},
		{"10.0.0", "mosquitto version 10.0.0", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.version != "" {
				// Like the real one: the version line, then usage, exit 3.
				fake := "#!/bin/sh\necho '" + tc.version + "'\necho 'usage: mosquitto [-c config_file]'\nexit 3\n"
				if err := os.WriteFile(filepath.Join(dir, "mosquitto"), []byte(fake), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// The tools the check uses, and nothing else of the host's.
			for _, tool := range []string{"sed", "awk", "head"} {
				p, err := exec.LookPath(tool)
				if err != nil {
					t.Fatalf("no %s here: %v", tool, err)
				}
				if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("/bin/sh", "-c", ContractCheck+"echo started\n")
			cmd.Env = []string{"PATH=" + dir}
			out, err := cmd.CombinedOutput()
			if tc.ok {
				if err != nil || strings.TrimSpace(string(out)) != "started" {
					t.Fatalf("refused a good image: %v: %s", err, out)
				}
				return
			}
			ee, isExit := err.(*exec.ExitError)
			if !isExit || ee.ExitCode() != ContractExit {
				t.Fatalf("exit %v, want %d: %s", err, ContractExit, out)
			}
			if !strings.HasPrefix(string(out), ContractPrefix) || !strings.Contains(string(out), tc.why) || strings.Contains(string(out), "started") {
				t.Fatalf("said %q, want %q after %q", out, tc.why, ContractPrefix)
			}
		})
	}
}
