//go:build e2e

package swarm

import "testing"

// TestDockerKeepsTheContract runs the same contract against the real Swarm.
func TestDockerKeepsTheContract(t *testing.T) {
	d, err := NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	contract(t, d, "swarm-mqtt/mosquitto:local")
}
