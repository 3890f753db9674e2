package datasync

import (
	"fmt"
	"strings"
)

// The sync image contract: what an image given as the operator's
// --sync-image must hold besides the operator binary (the agent): lsyncd
// and rsync on the PATH, and the agent under the name of its rsync wrapper
// (lsyncd runs it in place of rsync, see the images/sync image). The agent
// checks it first thing; an image that does not meet it stops the agent
// with a ContractPrefix line in its log and exit status ContractExit, and
// the operator reports that line in the cluster's Degraded condition.
const (
	ContractPrefix = "image contract: "
	ContractExit   = 78
)

// ContractPrograms are the programs the sync image must have on its PATH.
var ContractPrograms = []string{"lsyncd", "rsync", "mqtt-sync-rsync"}

// CheckContract says what the image lacks (nil: nothing), looking each
// program up with lookPath (exec.LookPath).
func CheckContract(lookPath func(string) (string, error)) error {
	var missing []string
	for _, p := range ContractPrograms {
		if _, err := lookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%sno %s in this image: a sync image needs lsyncd, rsync and the operator binary linked as mqtt-sync-rsync on the PATH (the images/sync image plus the binary)", ContractPrefix, strings.Join(missing, ", "))
}
