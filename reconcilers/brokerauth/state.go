package brokerauth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// Topic is where a broker takes its state (cluster_auth.h's
// AUTH_STATE_TOPIC): only the internal user may publish there, and no
// bridge carries it.
const Topic = "$cluster/auth/state"

// AppliedTopic is the broker's answer, sent to the pushing client alone:
// the version it serves, "refused" or "disabled".
const AppliedTopic = "$cluster/auth/applied"

// State is a cluster's auth state as the brokers take it, and its version
// (a digest of its content: the same rules are the same version).
type State struct {
	Version string
	Body    []byte
	// Rules counts the rules.
	Rules int
}

// Render is the state of a defaulted, valid cluster.
func Render(c *api.MqttCluster) State {
	var b strings.Builder
	for _, r := range c.Spec.Auth.ACLs {
		fmt.Fprintf(&b, "rule %s %s\n", r.Access, r.Topic)
	}
	sum := sha256.Sum256([]byte(b.String()))
	v := hex.EncodeToString(sum[:8])
	return State{
		Version: v,
		Body:    []byte("cluster-auth 1\nversion " + v + "\n" + b.String() + "end\n"),
		Rules:   len(c.Spec.Auth.ACLs),
	}
}
