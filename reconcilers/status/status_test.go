package status

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/bridges"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// links is a fixed bridge topology: child -> parent (connected).
type links map[int]int

func (l links) Link(i int) bridges.Link {
	if p, ok := l[i]; ok {
		return bridges.Link{Child: i, Parent: p, Connected: true, Since: t0.Add(-time.Minute)}
	}
	return bridges.Link{Child: i, Parent: -1}
}

func (l links) Problem(int) bridges.Problem { return bridges.Problem{} }

// problems adds what brokers' starts said of their image to a topology.
type problems struct {
	links
	p map[int]bridges.Problem
}

func (l problems) Problem(i int) bridges.Problem { return l.p[i] }

// world is a cluster of n brokers and one HAProxy task, every task
// running its service's spec for a minute on node n1, every bridge up to
// broker 0.
func world(n int) Input {
	c := &api.MqttCluster{}
	c.Name, c.Generation = "iot", 3
	api.Default(c, api.BuiltinDefaults())
	r := int32(n)
	c.Spec.Replicas = &r
	one := int32(1)
	c.Spec.LoadBalancer.Replicas = &one
	in := Input{Cluster: c, Now: t0, StableAfter: 3 * time.Second, Links: links{},
		Nodes: []dswarm.Node{{ID: "n1", Description: dswarm.NodeDescription{Hostname: "node-1"}, Status: dswarm.NodeStatus{Addr: "10.0.0.1"}}}}
	add := func(name string) {
		svc := dswarm.Service{ID: "s-" + name}
		svc.Spec.Name = name
		svc.Spec.Labels = map[string]string{swarm.LabelSpecHash: "h1"}
		svc.Spec.TaskTemplate.ContainerSpec = &dswarm.ContainerSpec{Labels: map[string]string{swarm.LabelSpecHash: "h1"}}
		in.Services = append(in.Services, svc)
		task := dswarm.Task{ID: "t-" + name, ServiceID: svc.ID, NodeID: "n1", DesiredState: dswarm.TaskStateRunning,
			Status: dswarm.TaskStatus{State: dswarm.TaskStateRunning, Timestamp: t0.Add(-time.Minute)}}
		task.Meta.CreatedAt = t0.Add(-time.Minute)
		task.Spec = svc.Spec.TaskTemplate
		in.Tasks = append(in.Tasks, task)
	}
	for i := 0; i < n; i++ {
		add(api.BrokerService("iot", i))
		if i > 0 {
			in.Links.(links)[i] = 0
		}
	}
	add(api.LoadBalancerService("iot"))
	return in
}

// perNode makes the cluster PerNode, broker i on node n<i+1>, active as
// given.
func perNode(in *Input, active ...bool) {
	c := in.Cluster
	c.Spec.Scaling.Mode, c.Spec.Replicas = api.ScalingPerNode, nil
	c.Status.Scaling = &api.ScalingStatus{Replicas: int32(len(active))}
	for i, a := range active {
		c.Status.Scaling.Nodes = append(c.Status.Scaling.Nodes, api.ScalingNode{Broker: int32(i), Node: fmt.Sprintf("n%d", i+1), Active: a})
	}
	n := int32(len(active))
	c.Spec.Replicas = &n // as the reconciler passes it
}

type want struct {
	ready                 bool
	readyReason, progress string // progress: a substring of Ready's message
	progressing           metav1.ConditionStatus
	degraded              metav1.ConditionStatus
	degradedReason        string
	hub                   string
	endpoints             int
	settle                bool
	events                []string // reasons
	sync                  string   // SyncHealthy status ("" absent, "keep": as before)
	acls                  string   // ACLsApplied status ("" absent)
}

func TestCompute(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Input)
		want   want
	}{
		{"all running and bridged", nil,
			want{ready: true, readyReason: "AllRunning", progress: "3/3 brokers running, 1/1", progressing: "False", degraded: "False", hub: "iot-broker-0", endpoints: 2}},
		{"a broker has no task", func(in *Input) { in.Tasks = in.Tasks[1:] },
			// broker 0 gone: broker 1 and 2 stay bridged to it (their
			// bridges say so until they notice), nobody is the hub.
			want{readyReason: "NotAllRunning", progress: "2/3 brokers running", progressing: "True", degraded: "False", endpoints: 2}},
		{"a task that fails says why", func(in *Input) {
			in.Tasks[2].Status.State, in.Tasks[2].Status.Err = dswarm.TaskStateRejected, "no suitable node"
			in.Tasks[2].DesiredState = dswarm.TaskStateShutdown
		}, want{readyReason: "NotAllRunning", progress: "iot-broker-2: no suitable node", progressing: "True", degraded: "False", hub: "iot-broker-0", endpoints: 2}},
		{"a task started a second ago does not count yet", func(in *Input) { in.Tasks[1].Status.Timestamp = t0.Add(-time.Second) },
			want{readyReason: "NotAllRunning", progress: "2/3 brokers running", progressing: "True", degraded: "False", hub: "iot-broker-0", endpoints: 2, settle: true}},
		{"a task of an older spec does not count", func(in *Input) { in.Services[1].Spec.Labels = map[string]string{swarm.LabelSpecHash: "h2"} },
			want{readyReason: "NotAllRunning", progress: "2/3 brokers running", progressing: "True", degraded: "False", hub: "iot-broker-0", endpoints: 2}},
		{"a rolling update waiting for the last broker to be stable", func(in *Input) {
			// Every task runs its service's current spec: the next
			// broker's service is not updated yet.
			in.Rollout = Rollout{Message: "rolling: waiting for iot-broker-1 to run its new spec"}
		}, want{readyReason: "NotAllRunning", progress: "rolling: waiting for iot-broker-1", progressing: "True", degraded: "False", hub: "iot-broker-0", endpoints: 2}},
		{"an unbridged broker", func(in *Input) { delete(in.Links.(links), 2) },
			want{readyReason: "NotAllRunning", progress: "not bridged to the hub yet: iot-broker-2", progressing: "True", degraded: "False", hub: "iot-broker-0", endpoints: 2}},
		{"the hub moved", func(in *Input) {
			in.Cluster.Status.Hub = "iot-broker-0"
			in.Tasks = in.Tasks[1:]
			in.Links = links{2: 1}
		}, want{readyReason: "NotAllRunning", progress: "2/3 brokers running", progressing: "True", degraded: "False", hub: "iot-broker-1", endpoints: 2, events: []string{"HubMoved"}}},
		{"ACL rules not on every broker yet", func(in *Input) {
			in.Auth = &AuthView{Version: "v2", Rules: 2, Enforced: true, Applied: []int{0, 2}, Brokers: 3}
		}, want{readyReason: "NotAllRunning", progress: "users and ACL rules not served yet by iot-broker-1", progressing: "True", degraded: "False", hub: "iot-broker-0", endpoints: 2, acls: "False"}},
		{"ACL rules on every broker", func(in *Input) {
			in.Auth = &AuthView{Version: "v2", Rules: 2, Enforced: true, Applied: []int{0, 1, 2}, Brokers: 3}
		}, want{ready: true, readyReason: "AllRunning", progress: "3/3 brokers running", progressing: "False", degraded: "False", hub: "iot-broker-0", endpoints: 2, acls: "True"}},
		{"PerNode with broker 2's node drained: parked, Ready on the others", func(in *Input) {
			perNode(in, true, true, false)
			in.Tasks = append(in.Tasks[:2], in.Tasks[3:]...)
			in.Auth = &AuthView{Version: "v2", Rules: 2, Enforced: true, Applied: []int{0, 1}, Brokers: 3, Parked: map[int]bool{2: true}}
		}, want{ready: true, readyReason: "AllRunning", progress: "2/2 brokers running (1 parked", progressing: "False", degraded: "False", hub: "iot-broker-0", endpoints: 2, acls: "True"}},
		{"PerNode with no node admitting a broker", func(in *Input) {
			perNode(in, false, false, false)
			in.Tasks = in.Tasks[3:]
		}, want{readyReason: "NotAllRunning", progress: "no node admits a broker", progressing: "True", degraded: "False", endpoints: 2}},
		{"ACL rules with no way to push them", func(in *Input) {
			in.Auth = &AuthView{Version: "v2", Rules: 2, Brokers: 3}
		}, want{ready: true, readyReason: "AllRunning", progress: "3/3 brokers running", progressing: "False", degraded: "False", hub: "iot-broker-0", endpoints: 2, acls: "False"}},
		{"no load balancer task", func(in *Input) { in.Tasks = in.Tasks[:3] },
			want{readyReason: "NotAllRunning", progress: "0/1 load balancer tasks running", progressing: "True", degraded: "False", hub: "iot-broker-0"}},
		{"the certificate is not served everywhere", func(in *Input) {
			in.Serving = Serving{Enabled: true, Serving: 1, Running: 2, Why: []string{"abc: connection refused"}}
		}, want{readyReason: "NotAllRunning", progress: "current certificate served by 1/2 load balancer tasks: abc: connection refused", progressing: "True", degraded: "False", hub: "iot-broker-0", endpoints: 2}},
		{"awaiting approval", func(in *Input) {
			in.Rollout = Rollout{Held: true, Message: "awaiting approval to restart iot-broker-0"}
		}, want{ready: true, readyReason: "AwaitingApproval", progress: "awaiting approval", progressing: "True", degraded: "False", hub: "iot-broker-0", endpoints: 2}},
		{"an error degrades", func(in *Input) { in.Failure = &Failure{Err: errors.New("boom"), Reason: "ReconcileError"} },
			want{readyReason: "NotAllRunning", progress: "3/3", progressing: "False", degraded: "True", degradedReason: "ReconcileError", hub: "iot-broker-0", endpoints: 2}},
		{"a signer job running is no fault", func(in *Input) { in.Failure = &Failure{Err: errors.New("signing"), Reason: "Signing", Waiting: true} },
			want{readyReason: "NotAllRunning", progress: "3/3", progressing: "False", degraded: "False", degradedReason: "Signing", hub: "iot-broker-0", endpoints: 2}},
		{"a broker whose image does not meet the contract", func(in *Input) {
			in.Tasks[1].Status.State, in.Tasks[1].Status.Err = dswarm.TaskStateFailed, "task: non-zero exit (78)"
			in.Links = problems{links: in.Links.(links), p: map[int]bridges.Problem{1: {Text: "image contract: no mosquitto in this image", At: t0.Add(-5 * time.Second)}}}
		}, want{readyReason: "NotAllRunning", progress: "2/3 brokers running", progressing: "True", degraded: "True", degradedReason: "ImageContract", hub: "iot-broker-0", endpoints: 2}},
		{"a running broker's old contract line is history", func(in *Input) {
			in.Links = problems{links: in.Links.(links), p: map[int]bridges.Problem{1: {Text: "image contract: no mosquitto in this image", At: t0.Add(-5 * time.Second)}}}
		}, want{ready: true, readyReason: "AllRunning", progress: "3/3", progressing: "False", degraded: "False", hub: "iot-broker-0", endpoints: 2}},
		{"a contract line older than a minute is history", func(in *Input) {
			in.Tasks[1].Status.State = dswarm.TaskStateFailed
			in.Links = problems{links: in.Links.(links), p: map[int]bridges.Problem{1: {Text: "image contract: no mosquitto in this image", At: t0.Add(-2 * time.Minute)}}}
		}, want{readyReason: "NotAllRunning", progress: "2/3 brokers running", progressing: "True", degraded: "False", hub: "iot-broker-0", endpoints: 2}},
		{"sync healthy", func(in *Input) {
			in.SyncEnabled = true
			in.Sync = syncView(in, time.Time{}.Add(1), "")
		}, want{ready: true, readyReason: "AllRunning", progress: "3/3", progressing: "False", degraded: "False", hub: "iot-broker-0", endpoints: 2, sync: "True"}},
		{"sync behind", func(in *Input) {
			in.SyncEnabled = true
			in.Sync = syncView(in, time.Time{}, "rsync: connection refused")
		}, want{ready: true, readyReason: "AllRunning", progress: "3/3", progressing: "False", degraded: "False", hub: "iot-broker-0", endpoints: 2, sync: "False"}},
		{"sync not asked this pass keeps the condition", func(in *Input) { in.SyncEnabled = true },
			want{ready: true, readyReason: "AllRunning", progress: "3/3", progressing: "False", degraded: "False", hub: "iot-broker-0", endpoints: 2, sync: "keep"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := world(3)
			meta.SetStatusCondition(&in.Cluster.Status.Conditions, metav1.Condition{Type: api.ConditionSyncHealthy, Status: "Unknown", Reason: "Before"})
			if tc.change != nil {
				tc.change(&in)
			}
			out := Compute(in)
			st := out.Status
			w := tc.want
			ready := meta.FindStatusCondition(st.Conditions, api.ConditionReady)
			if out.Ready != w.ready || ready.Reason != w.readyReason || !strings.Contains(ready.Message, w.progress) {
				t.Errorf("ready %v, Ready %s %q; want %v, %s, containing %q", out.Ready, ready.Reason, ready.Message, w.ready, w.readyReason, w.progress)
			}
			if p := meta.FindStatusCondition(st.Conditions, api.ConditionProgressing); p.Status != w.progressing {
				t.Errorf("Progressing %s (%s); want %s", p.Status, p.Message, w.progressing)
			}
			d := meta.FindStatusCondition(st.Conditions, api.ConditionDegraded)
			if d.Status != w.degraded || (w.degradedReason != "" && d.Reason != w.degradedReason) {
				t.Errorf("Degraded %s %s; want %s %s", d.Status, d.Reason, w.degraded, w.degradedReason)
			}
			if st.Hub != w.hub || len(st.Endpoints) != w.endpoints || (out.Settle > 0) != w.settle {
				t.Errorf("hub %q endpoints %v settle %v; want %q, %d, %v", st.Hub, st.Endpoints, out.Settle, w.hub, w.endpoints, w.settle)
			}
			var reasons []string
			for _, e := range out.Events {
				reasons = append(reasons, e.Reason)
			}
			if strings.Join(reasons, ",") != strings.Join(w.events, ",") {
				t.Errorf("events %v; want %v", reasons, w.events)
			}
			s := meta.FindStatusCondition(st.Conditions, api.ConditionSyncHealthy)
			switch {
			case w.sync == "" && s != nil:
				t.Errorf("SyncHealthy %v; want none", s)
			case w.sync == "keep" && (s == nil || s.Reason != "Before"):
				t.Errorf("SyncHealthy %v; want it kept", s)
			case w.sync != "" && w.sync != "keep" && (s == nil || string(s.Status) != w.sync):
				t.Errorf("SyncHealthy %v; want %s", s, w.sync)
			}
			a := meta.FindStatusCondition(st.Conditions, api.ConditionACLsApplied)
			if (a == nil) != (w.acls == "") || (a != nil && string(a.Status) != w.acls) {
				t.Errorf("ACLsApplied %v; want %q", a, w.acls)
			}
			if st.ObservedGeneration != 3 || len(st.Brokers) != 3 {
				t.Errorf("observedGeneration %d, %d brokers", st.ObservedGeneration, len(st.Brokers))
			}
		})
	}
}

// syncView: one agent on node n1 copying every broker to node n2, last
// synced at last (zero: never), with error e.
func syncView(in *Input, last time.Time, e string) *SyncView {
	var cfg datasync.Config
	var src datasync.SourceStatus
	for i := 0; i < int(*in.Cluster.Spec.Replicas); i++ {
		name := api.BrokerService("iot", i)
		cfg.Brokers = append(cfg.Brokers, datasync.Broker{Name: name, Source: "n1", Targets: []string{"n2"}})
		src.Broker = name
		src.Targets = []datasync.TargetStatus{{Node: "n2", LastSync: last, Error: e}}
	}
	st := datasync.Status{Sources: []datasync.SourceStatus{}}
	for _, b := range cfg.Brokers {
		s := src
		s.Broker = b.Name
		st.Sources = append(st.Sources, s)
	}
	return &SyncView{Plan: map[string]datasync.Config{"n1": cfg}, Status: map[string]datasync.Status{"n1": st},
		Hostname: map[string]string{"n1": "node-1", "n2": "node-2"}}
}

// A broker whose state and node did not change keeps the time it was
// first seen so; one that moved gets the new time.
func TestBrokerSinceKept(t *testing.T) {
	in := world(2)
	first := Compute(in).Status
	in.Cluster.Status = first
	in.Now = t0.Add(time.Hour)
	in.Tasks[0].Status.Timestamp = t0.Add(30 * time.Minute) // re-reported, same state
	again := Compute(in).Status
	if !again.Brokers[0].Since.Equal(first.Brokers[0].Since) {
		t.Errorf("since %v, want the first %v", again.Brokers[0].Since, first.Brokers[0].Since)
	}
	in.Nodes = append(in.Nodes, dswarm.Node{ID: "n2", Description: dswarm.NodeDescription{Hostname: "node-2"}})
	in.Tasks[0].NodeID = "n2"
	moved := Compute(in).Status
	if moved.Brokers[0].Node != "node-2" || moved.Brokers[0].Since.Equal(first.Brokers[0].Since) {
		t.Errorf("moved broker: %+v", moved.Brokers[0])
	}
}

// TestImageContractNamesTheBroker: the Degraded message says which broker
// and what its image lacks, as the broker logged it.
func TestImageContractNamesTheBroker(t *testing.T) {
	in := world(3)
	in.Tasks[2].Status.State = dswarm.TaskStateFailed
	in.Links = problems{links: in.Links.(links), p: map[int]bridges.Problem{2: {Text: "image contract: Mosquitto 2.0.11 in this image is older than 2.0.13, the oldest a broker image may carry", At: t0.Add(-time.Second)}}}
	c := meta.FindStatusCondition(Compute(in).Status.Conditions, api.ConditionDegraded)
	if c == nil || c.Status != metav1.ConditionTrue || c.Message != "iot-broker-2: image contract: Mosquitto 2.0.11 in this image is older than 2.0.13, the oldest a broker image may carry" {
		t.Fatalf("Degraded: %+v", c)
	}
}

// TestLoadBalancerImageContract: no load-balancer task runs and its image
// is why — Docker could not run it, or HAProxy refused the configuration —
// so the cluster is Degraded (ImageContract) naming the service, the cause
// and what an image needs; not for other failures, an old one, or while a
// task runs.
func TestLoadBalancerImageContract(t *testing.T) {
	lbFails := func(state dswarm.TaskState, err string, at time.Time) func(*Input) {
		return func(in *Input) {
			lb := &in.Tasks[len(in.Tasks)-1]
			lb.Status.State, lb.Status.Err, lb.Status.Timestamp = state, err, at
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*Input)
		alerts []string
		want   string // the Degraded message's start ("": not Degraded)
	}{
		{"no command in the image", lbFails(dswarm.TaskStateRejected, "No command specified", t0.Add(-time.Second)), nil,
			"iot-lb: No command specified (a load-balancer image needs HAProxy 2.4 or later"},
		{"no haproxy in the image", lbFails(dswarm.TaskStateRejected, `starting container failed: exec: "/usr/sbin/haproxy": stat /usr/sbin/haproxy: no such file or directory`, t0.Add(-time.Second)), nil,
			`iot-lb: starting container failed: exec: "/usr/sbin/haproxy"`},
		{"HAProxy refuses the configuration", lbFails(dswarm.TaskStateFailed, "task: non-zero exit (1)", t0.Add(-time.Second)),
			[]string{"[ALERT]    (1) : config : parsing [/usr/local/etc/haproxy/haproxy.cfg:40] : unknown service 'prometheus-exporter'"},
			"iot-lb: HAProxy refused its configuration: [ALERT]    (1) : config : parsing [/usr/local/etc/haproxy/haproxy.cfg:40] : unknown service 'prometheus-exporter' (a load-balancer image needs"},
		{"an image that cannot be pulled is not the contract", lbFails(dswarm.TaskStateRejected, "No such image: haproxy:9", t0.Add(-time.Second)), nil, ""},
		{"an old failure", lbFails(dswarm.TaskStateRejected, "No command specified", t0.Add(-2*time.Minute)), nil, ""},
		{"a task runs", nil, []string{"[ALERT] stale"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := world(3)
			if tc.change != nil {
				tc.change(&in)
			}
			in.LoadBalancerAlerts = tc.alerts
			c := meta.FindStatusCondition(Compute(in).Status.Conditions, api.ConditionDegraded)
			if tc.want == "" {
				if c != nil && c.Status == metav1.ConditionTrue {
					t.Fatalf("Degraded: %+v", c)
				}
				return
			}
			if c == nil || c.Status != metav1.ConditionTrue || c.Reason != "ImageContract" || !strings.HasPrefix(c.Message, tc.want) {
				t.Fatalf("Degraded: %+v\nwant a message starting %q", c, tc.want)
			}
		})
	}
}

// TestSyncImageContract: a sync agent that stopped at start saying what
// its image lacks makes the cluster Degraded (ImageContract), naming the
// sync service; an old report or sync off does not.
func TestSyncImageContract(t *testing.T) {
	const line = "image contract: no lsyncd in this image: a sync image needs lsyncd, rsync and the operator binary linked as mqtt-sync-rsync on the PATH"
	for _, tc := range []struct {
		name string
		on   bool
		at   time.Time
		want bool
	}{
		{"recent", true, t0.Add(-time.Second), true},
		{"old", true, t0.Add(-2 * time.Minute), false},
		{"sync off", false, t0.Add(-time.Second), false},
	} {
		in := world(3)
		in.SyncEnabled = tc.on
		in.SyncContract = bridges.Problem{Text: line, At: tc.at}
		c := meta.FindStatusCondition(Compute(in).Status.Conditions, api.ConditionDegraded)
		got := c != nil && c.Status == metav1.ConditionTrue && c.Reason == "ImageContract" && c.Message == "iot-sync: "+line
		if got != tc.want {
			t.Errorf("%s: Degraded %+v", tc.name, c)
		}
	}
}
