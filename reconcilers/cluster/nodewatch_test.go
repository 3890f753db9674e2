package cluster

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
)

func TestJudgeNeedsTheOperatorAndEveryAgentThatAnswers(t *testing.T) {
	now := time.Unix(1000, 0)
	const after = 2 * time.Second
	view := func(node string, unseen map[string]time.Duration) datasync.PeerView {
		v := datasync.PeerView{Node: node, Unseen: map[string]datasync.Duration{}}
		for n, d := range unseen {
			v.Unseen[n] = datasync.Duration(d)
		}
		return v
	}
	nodes := []string{"a", "b", "c"}
	silent := map[string]time.Time{"a": now, "b": now, "c": now.Add(-3 * time.Second)}
	for _, tc := range []struct {
		name  string
		seen  map[string]time.Time
		views map[string]datasync.PeerView
		want  []string
	}{
		{"both other agents agree", silent, map[string]datasync.PeerView{
			"a": view("a", map[string]time.Duration{"b": 0, "c": 3 * time.Second}),
			"b": view("b", map[string]time.Duration{"a": 0, "c": 2500 * time.Millisecond}),
		}, []string{"c"}},
		{"one agent still hears it (cut off from the operator's node only)", silent, map[string]datasync.PeerView{
			"a": view("a", map[string]time.Duration{"b": 0, "c": 3 * time.Second}),
			"b": view("b", map[string]time.Duration{"a": 0, "c": 500 * time.Millisecond}),
		}, nil},
		{"silent for less than the bound to an agent", silent, map[string]datasync.PeerView{
			"a": view("a", map[string]time.Duration{"b": 0, "c": 3 * time.Second}),
			"b": view("b", map[string]time.Duration{"a": 0, "c": 1900 * time.Millisecond}),
		}, nil},
		{"an agent that does not know the node yet", silent, map[string]datasync.PeerView{
			"a": view("a", map[string]time.Duration{"b": 0, "c": 3 * time.Second}),
			"b": view("b", map[string]time.Duration{"a": 0}),
		}, nil},
		{"no agent answers the operator (it is the one cut off)", silent, map[string]datasync.PeerView{}, nil},
		{"the operator heard it lately", map[string]time.Time{"a": now, "b": now, "c": now.Add(-time.Second)}, map[string]datasync.PeerView{
			"a": view("a", map[string]time.Duration{"b": 0, "c": 3 * time.Second}),
			"b": view("b", map[string]time.Duration{"a": 0, "c": 3 * time.Second}),
		}, nil},
		{"it answered this round", silent, map[string]datasync.PeerView{
			"a": view("a", map[string]time.Duration{"b": 0, "c": 3 * time.Second}),
			"b": view("b", map[string]time.Duration{"a": 0, "c": 3 * time.Second}),
			"c": view("c", map[string]time.Duration{"a": 3 * time.Second, "b": 3 * time.Second}),
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := slices.Sorted(maps.Keys(Judge(now, tc.seen, tc.views, nodes, after)))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("lost %v, want %v", got, tc.want)
			}
		})
	}
}
