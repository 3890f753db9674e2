package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

// haNode is one manager of the docker-in-docker Swarm.
type haNode struct {
	name, api string
}

// leaderInfo asks one manager's operator who leads (nil when it does not
// answer within 300 ms).
func leaderInfo(n haNode) *store.LeaderInfo {
	c, err := client.New(client.Options{Server: n.api, CAFile: os.Getenv("MQTTCTL_CA_FILE"), Timeout: 300 * time.Millisecond})
	if err != nil {
		return nil
	}
	li, err := c.Leader(context.Background())
	if err != nil {
		return nil
	}
	return li
}

func reconcileSuccesses(n haNode) int {
	return testutil.Metric(n.api, `mqttoperator_reconcile_total{result="success"}`)
}

// haNodes maps every manager API (MQTTCTL_SERVERS) to its node container.
func haNodes(servers string) ([]haNode, error) {
	ips := map[string]string{}
	out, err := sh("docker", "ps", "--filter", "label=swarm-mqtt.dind=1", "--format", "{{.Names}}")
	if err != nil {
		return nil, err
	}
	for _, n := range strings.Fields(out) {
		ip, err := sh("docker", "inspect", "-f", `{{(index .NetworkSettings.Networks "mqtt-dind").IPAddress}}`, n)
		if err != nil {
			return nil, err
		}
		ips[ip] = n
	}
	var nodes []haNode
	for _, s := range strings.Split(servers, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		name, ok := ips[u.Hostname()]
		if !ok {
			return nil, fmt.Errorf("no docker-in-docker node at %s (make up MANAGERS=3)", u.Hostname())
		}
		nodes = append(nodes, haNode{name: name, api: strings.TrimSpace(s)})
	}
	if len(nodes) < 3 {
		return nil, errors.New("the HA benchmark needs three managers (make up MANAGERS=3)")
	}
	return nodes, nil
}

func haLeader(nodes []haNode) (int, error) {
	for i, n := range nodes {
		if li := leaderInfo(n); li != nil && li.IsLeader {
			return i, nil
		}
	}
	return -1, errors.New("no leader")
}

// runHABench: apply latency through the leader's API and through a
// follower's (which forwards), then five leader losses (the leader's
// operator killed): time to a new leader and to its first successful
// reconcile.
func runHABench(ctx context.Context, servers, token string) error {
	nodes, err := haNodes(servers)
	if err != nil {
		return err
	}
	li, err := haLeader(nodes)
	if err != nil {
		return err
	}
	fi := (li + 1) % len(nodes)
	clientOf := func(n haNode) (*client.Client, error) {
		return client.New(client.Options{Server: n.api, Token: token, CAFile: os.Getenv("MQTTCTL_CA_FILE"), Timeout: 10 * time.Second})
	}
	lc, err := clientOf(nodes[li])
	if err != nil {
		return err
	}
	fc, err := clientOf(nodes[fi])
	if err != nil {
		return err
	}
	qs, err := lc.GetConsistent(ctx, "quickstart")
	if err != nil {
		return err
	}
	doc := qs.DeepCopy()
	doc.ResourceVersion, doc.UID, doc.Generation, doc.CreationTimestamp, doc.Status = "", "", 0, metav1.Time{}, api.MqttClusterStatus{}
	if doc.Labels == nil {
		doc.Labels = map[string]string{}
	}
	const perSide = 300
	var viaLeader, viaFollower []time.Duration
	for round := 0; round < 6; round++ {
		for i := 0; i < perSide/6; i++ {
			for side, c := range []*client.Client{lc, fc} {
				doc.Labels["bench-seq"] = fmt.Sprintf("%d-%d-%d", round, i, side)
				b, _ := json.Marshal(doc)
				t0 := time.Now()
				if _, err := c.Apply(ctx, b); err != nil {
					return err
				}
				if side == 0 {
					viaLeader = append(viaLeader, time.Since(t0))
				} else {
					viaFollower = append(viaFollower, time.Since(t0))
				}
			}
		}
	}
	fmt.Printf("\napply latency on a 3-voter raft cluster (docker-in-docker managers), %d applies each, alternating\n", perSide)
	fmt.Printf("  through the leader's API:                  p50 %s  p99 %s\n", pct(viaLeader, 50), pct(viaLeader, 99))
	fmt.Printf("  through a follower's API (forwarded):      p50 %s  p99 %s\n", pct(viaFollower, 50), pct(viaFollower, 99))

	var toLeader, toReconcile []time.Duration
	for run := 0; run < 5; run++ {
		li, err := haLeader(nodes)
		if err != nil {
			return err
		}
		old := nodes[li]
		before := map[int]int{}
		for i, n := range nodes {
			before[i] = reconcileSuccesses(n)
		}
		id, err := sh("docker", "exec", old.name, "docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name=mqtt-operator_operator")
		if err != nil || id == "" {
			return fmt.Errorf("the leader's operator container on %s: %v", old.name, err)
		}
		t0 := time.Now()
		if _, err := sh("docker", "exec", old.name, "docker", "kill", strings.Fields(id)[0]); err != nil {
			return err
		}
		newLeader := -1
		for time.Since(t0) < 30*time.Second && newLeader < 0 {
			for i, n := range nodes {
				if i == li {
					continue
				}
				if l := leaderInfo(n); l != nil && l.IsLeader {
					newLeader = i
					toLeader = append(toLeader, time.Since(t0))
					break
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		if newLeader < 0 {
			return errors.New("no new leader within 30s")
		}
		for time.Since(t0) < 60*time.Second {
			if v := reconcileSuccesses(nodes[newLeader]); v > before[newLeader] {
				toReconcile = append(toReconcile, time.Since(t0))
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if len(toReconcile) <= run {
			return errors.New("no reconcile by the new leader within 60s")
		}
		// The killed operator is restarted by Swarm and rejoins.
		deadline := time.Now().Add(90 * time.Second)
		for {
			if l := leaderInfo(old); l != nil && l.LeaderID != "" && !l.IsLeader {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the operator on %s did not come back", old.name)
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
	}
	fmt.Printf("leader loss (the leader's operator killed) -> new leader, 5 runs:           min %s median %s max %s   target <= 3s\n", pct(toLeader, 0), pct(toLeader, 50), pct(toLeader, 100))
	fmt.Printf("leader loss -> the new leader's first successful reconcile, 5 runs:        min %s median %s max %s   target <= 5s\n", pct(toReconcile, 0), pct(toReconcile, 50), pct(toReconcile, 100))
	return nil
}
