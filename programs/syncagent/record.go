package syncagent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Record is the outcome of the syncs to one target, kept by the rsync
// wrapper lsyncd runs (RunRsync), read by the agent for its status.
type Record struct {
	Target      string    `json:"target"`
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	// LastSuccess is when the last successful run began.
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	Error       string    `json:"error,omitempty"`
}

func recordPath(stateDir, target string) string {
	h := sha256.Sum256([]byte(target))
	return filepath.Join(stateDir, "rsync", hex.EncodeToString(h[:8])+".json")
}

// ReadRecord reads the record of a target (zero when none).
func ReadRecord(stateDir, target string) Record {
	var r Record
	b, err := os.ReadFile(recordPath(stateDir, target))
	if err == nil {
		_ = json.Unmarshal(b, &r)
	}
	r.Target = target
	return r
}

// RunRsync runs rsync with lsyncd's arguments (the last one is the target)
// and records the outcome. Exit status 24 (files vanished while copied:
// Mosquitto renames its database into place) counts as success; the
// renamed file is synced by the next run.
func RunRsync(stateDir string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	start := time.Now()
	cmd := exec.Command("rsync", args...)
	var errBuf bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, io.MultiWriter(stderr, &errBuf)
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		code = 127
		errBuf.WriteString(err.Error())
	}
	if len(args) == 0 {
		return code
	}
	target := args[len(args)-1]
	rec := ReadRecord(stateDir, target)
	rec.LastAttempt = start
	if code == 0 || code == 24 {
		rec.LastSuccess, rec.Error = start, ""
	} else {
		rec.Error = lastLine(errBuf.String())
		if rec.Error == "" {
			rec.Error = "rsync exited with status " + itoa(code)
		}
	}
	if b, err := json.Marshal(rec); err == nil {
		p := recordPath(stateDir, target)
		_ = os.MkdirAll(filepath.Dir(p), 0o700)
		_ = writeFileAtomic(p, b, 0o600)
	}
	return code
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }
