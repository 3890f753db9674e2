package swarm

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/docker/docker/api/types/container"
)

// The figures of a real stats answer (Docker 20.10, cgroup v1: the
// registry container of hack/dind.sh), and a cgroup v2 one's working set.
func TestStatsOf(t *testing.T) {
	b, err := os.ReadFile("testdata/stats-cgroup1.json")
	if err != nil {
		t.Fatal(err)
	}
	var s container.StatsResponse
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	got := statsOf(s)
	want := ContainerStats{CPUSeconds: 29.01040507, MemoryUsage: 277782528, MemoryWorkingSet: 277782528 - 75276288,
		MemoryLimit: 25275953152, NetRx: 290530611, NetTx: 650182581, PIDs: 8}
	if got != want {
		t.Fatalf("stats:\ngot  %+v\nwant %+v", got, want)
	}

	var v2 container.StatsResponse
	v2.MemoryStats.Usage = 1000
	v2.MemoryStats.Stats = map[string]uint64{"inactive_file": 300, "anon": 700}
	v2.Networks = map[string]container.NetworkStats{"eth0": {RxBytes: 1, TxBytes: 2}, "eth1": {RxBytes: 10, TxBytes: 20}}
	if got := statsOf(v2); got.MemoryWorkingSet != 700 || got.NetRx != 11 || got.NetTx != 22 {
		t.Fatalf("cgroup v2: %+v", got)
	}
	v2.MemoryStats.Stats["inactive_file"] = 5000 // never below zero
	if got := statsOf(v2); got.MemoryWorkingSet != 1000 {
		t.Fatalf("inactive above usage: %+v", got)
	}
}
