package brokerauth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
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
	// Rules counts the rules (the users' included), Users the users
	// served.
	Rules, Users int
}

// Render is the state of a defaulted, valid cluster and its users (by
// name, each with its generated password's hash in secrets; a disabled
// user, or one with no hash yet, is left out: it cannot log in).
func Render(c *api.MqttCluster, users []api.MqttUser, secrets map[string]credentials.UserSecret) State {
	var b strings.Builder
	n := len(c.Spec.Auth.ACLs)
	for _, r := range c.Spec.Auth.ACLs {
		fmt.Fprintf(&b, "rule %s %s\n", r.Access, r.Topic)
	}
	users = slices.Clone(users)
	slices.SortFunc(users, func(a, b api.MqttUser) int { return strings.Compare(a.Name, b.Name) })
	served := 0
	for _, u := range users {
		sec, ok := secrets[u.Name]
		if u.Spec.Disabled || !ok || sec.Hash == "" {
			continue
		}
		served++
		fmt.Fprintf(&b, "user %s %s", u.Name, sec.Hash)
		if m := u.Spec.Limits.MaxConnections; m != nil {
			fmt.Fprintf(&b, " %d", *m)
		}
		b.WriteString("\n")
		for _, r := range u.Spec.Authorization.ACLs {
			fmt.Fprintf(&b, "urule %s %s\n", r.Access, r.Topic)
			n++
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	v := hex.EncodeToString(sum[:8])
	return State{
		Version: v,
		Body:    []byte("cluster-auth 1\nversion " + v + "\n" + b.String() + "end\n"),
		Rules:   n,
		Users:   served,
	}
}
