package broker

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

func TestBridgeTopologyIsATreeAndIndependentOfReplicas(t *testing.T) {
	t.Parallel()
	if b, err := RenderBridge("iot", 0, "pw", Options{}); err != nil || b != nil {
		t.Fatalf("broker 0 is the root and has no bridge: %q %v", b, err)
	}
	for i := 1; i < 15; i++ {
		// Every address is a lower-numbered broker's internal listener:
		// edges only point down, so no set of bridges can form a loop.
		for _, a := range Parents("iot", i) {
			var j int
			if _, err := fmt.Sscanf(a, "tasks.iot-broker-%d:1884", &j); err != nil || j >= i {
				t.Fatalf("broker %d bridges to %q", i, a)
			}
		}
		if len(Parents("iot", i)) != i {
			t.Fatalf("broker %d has %d parents", i, len(Parents("iot", i)))
		}
	}
	// The bridge depends on the broker's index only: scaling never changes
	// a staying broker's bridge (nor restarts it).
	a, _ := RenderBridge("iot", 2, "pw", Options{})
	b, _ := RenderBridge("iot", 2, "pw", Options{})
	if !slices.Equal(a, b) {
		t.Fatal("bridge rendering is not deterministic")
	}
	testutil.Golden(t, "bridge-2.conf", a)
	for _, want := range []string{"round_robin true", "topic # both 2", "topic $cluster/shared/# both 0", "bridge_protocol_version mqttv50", "cleansession true", "local_cleansession false", "remote_username bridge", "remote_password pw"} {
		if !strings.Contains(string(a), want+"\n") {
			t.Errorf("bridge section lacks %q", want)
		}
	}
	if _, err := RenderBridge("iot", 1, "with space", Options{}); err == nil {
		t.Error("a password with a space was rendered")
	}
}
