package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server/servertest"
)

type call struct {
	method, path, token string
	body                []byte
}

func do(t *testing.T, base string, c call) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if c.body != nil {
		rd = bytes.NewReader(c.body)
	}
	req, _ := http.NewRequestWithContext(context.Background(), c.method, base+c.path, rd)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func status(t *testing.T, b []byte) server.Status {
	t.Helper()
	var s server.Status
	if err := json.Unmarshal(b, &s); err != nil || s.Kind != "Status" {
		t.Fatalf("not a Status body: %s", b)
	}
	return s
}

func iot(t *testing.T) []byte {
	b, err := os.ReadFile("../../examples/iot.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const tok = servertest.Token

func TestAuth(t *testing.T) {
	t.Parallel()
	inst := servertest.Start(t, "")
	cases := map[string]struct {
		c    call
		code int
	}{
		"no token list":    {call{method: "GET", path: server.BasePath}, 401},
		"no token apply":   {call{method: "POST", path: server.BasePath, body: iot(t)}, 401},
		"wrong token":      {call{method: "GET", path: server.BasePath, token: "nope"}, 403},
		"prefix token":     {call{method: "GET", path: server.BasePath, token: tok[:5]}, 403},
		"wrong token del":  {call{method: "DELETE", path: server.BasePath + "/iot", token: tok + "x"}, 403},
		"no token status":  {call{method: "GET", path: server.BasePath + "/iot/status"}, 401},
		"right token":      {call{method: "GET", path: server.BasePath, token: tok}, 200},
		"healthz open":     {call{method: "GET", path: "/healthz"}, 200},
		"readyz open":      {call{method: "GET", path: "/readyz"}, 200},
		"metrics open":     {call{method: "GET", path: "/metrics"}, 200},
		"leader open":      {call{method: "GET", path: "/v1/status/leader"}, 200},
		"peers open":       {call{method: "GET", path: "/v1/status/peers"}, 200},
		"version open":     {call{method: "GET", path: "/version"}, 200},
		"leader read-only": {call{method: "POST", path: "/v1/status/leader"}, 404},
	}
	for name, c := range cases {
		code, body := do(t, inst.URL, c.c)
		if code != c.code {
			t.Errorf("%s: %d, want %d: %s", name, code, c.code, body)
		}
		if code >= 400 {
			status(t, body)
		}
	}
	// No request made the store hold anything.
	if objs, _ := inst.Store.List(api.KindMqttCluster); len(objs) != 0 {
		t.Fatalf("unauthenticated requests wrote %d objects", len(objs))
	}
}

func TestApplyLifecycle(t *testing.T) {
	t.Parallel()
	inst := servertest.Start(t, "")
	var ar server.ApplyResponse
	code, body := do(t, inst.URL, call{"POST", server.BasePath, tok, iot(t)})
	if code != 201 || json.Unmarshal(body, &ar) != nil || ar.Result != "created" {
		t.Fatalf("create: %d %s", code, body)
	}
	obj := ar.Object
	if obj.Generation != 1 || obj.UID == "" || obj.ResourceVersion == "" || obj.CreationTimestamp.IsZero() || *obj.Spec.Replicas != 3 {
		t.Fatalf("created object lacks server fields: %+v", obj.ObjectMeta)
	}
	// Same file again: unchanged, nothing written.
	code, body = do(t, inst.URL, call{"POST", server.BasePath, tok, iot(t)})
	_ = json.Unmarshal(body, &ar)
	if code != 200 || ar.Result != "unchanged" || ar.Object.ResourceVersion != obj.ResourceVersion {
		t.Fatalf("re-apply: %d %s", code, body)
	}
	// A change: configured, generation 2.
	changed := bytes.Replace(iot(t), []byte("replicas: 3"), []byte("replicas: 5"), 1)
	code, body = do(t, inst.URL, call{"PUT", server.BasePath + "/iot", tok, changed})
	_ = json.Unmarshal(body, &ar)
	if code != 200 || ar.Result != "configured" || ar.Object.Generation != 2 || *ar.Object.Spec.Replicas != 5 {
		t.Fatalf("update: %d %s", code, body)
	}
	// Stored object carries the defaults the server filled.
	code, body = do(t, inst.URL, call{"GET", server.BasePath + "/iot", tok, nil})
	var got api.MqttCluster
	if code != 200 || json.Unmarshal(body, &got) != nil || got.Spec.Sync.Delay != "1s" || got.Spec.LoadBalancer.Image != "haproxy:2.8" {
		t.Fatalf("get: %d %s", code, body)
	}
	// Status write does not bump generation.
	got.Status.ObservedGeneration = 2
	got.Status.Endpoints = []string{"mqtt://10.0.0.1:1883"}
	sb, _ := json.Marshal(&got)
	code, body = do(t, inst.URL, call{"PUT", server.BasePath + "/iot/status", tok, sb})
	var afterStatus api.MqttCluster
	if code != 200 || json.Unmarshal(body, &afterStatus) != nil || afterStatus.Generation != 2 || afterStatus.Status.ObservedGeneration != 2 {
		t.Fatalf("status: %d %s", code, body)
	}
	// List with a selector.
	code, body = do(t, inst.URL, call{"GET", server.BasePath + "?labelSelector=team%3Dedge", tok, nil})
	var list api.MqttClusterList
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list.Items) != 1 {
		t.Fatalf("list: %d %s", code, body)
	}
	code, body = do(t, inst.URL, call{"GET", server.BasePath + "?labelSelector=team%3Dcore", tok, nil})
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list.Items) != 0 {
		t.Fatalf("list other: %d %s", code, body)
	}
	// Delete, then 404.
	if code, body = do(t, inst.URL, call{"DELETE", server.BasePath + "/iot", tok, nil}); code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, body = do(t, inst.URL, call{"GET", server.BasePath + "/iot", tok, nil}); code != 404 || status(t, body).Reason != "NotFound" {
		t.Fatalf("get deleted: %d %s", code, body)
	}
	if code, _ = do(t, inst.URL, call{"DELETE", server.BasePath + "/iot", tok, nil}); code != 404 {
		t.Fatalf("delete twice: %d", code)
	}
}

func TestConflicts(t *testing.T) {
	t.Parallel()
	inst := servertest.Start(t, "")
	var ar server.ApplyResponse
	_, body := do(t, inst.URL, call{"POST", server.BasePath, tok, iot(t)})
	_ = json.Unmarshal(body, &ar)
	rv := ar.Object.ResourceVersion
	// Someone else changes it.
	do(t, inst.URL, call{"POST", server.BasePath, tok, bytes.Replace(iot(t), []byte("replicas: 3"), []byte("replicas: 4"), 1)})
	// A write carrying the old resourceVersion: 409, nothing changed.
	stale := bytes.Replace(iot(t), []byte("  name: iot\n"), []byte("  name: iot\n  resourceVersion: \""+rv+"\"\n"), 1)
	stale = bytes.Replace(stale, []byte("replicas: 3"), []byte("replicas: 7"), 1)
	code, body := do(t, inst.URL, call{"POST", server.BasePath, tok, stale})
	if code != 409 || status(t, body).Reason != "Conflict" {
		t.Fatalf("stale apply: %d %s", code, body)
	}
	if code, body = do(t, inst.URL, call{"DELETE", server.BasePath + "/iot?resourceVersion=" + rv, tok, nil}); code != 409 {
		t.Fatalf("stale delete: %d %s", code, body)
	}
	statusBody := []byte(`{"apiVersion":"mqtt.swarm/v1alpha1","kind":"MqttCluster","metadata":{"name":"iot","resourceVersion":"` + rv + `"},"status":{"observedGeneration":1}}`)
	if code, body = do(t, inst.URL, call{"PUT", server.BasePath + "/iot/status", tok, statusBody}); code != 409 {
		t.Fatalf("stale status: %d %s", code, body)
	}
	got, _ := inst.Store.List(api.KindMqttCluster)
	if len(got) != 1 || !strings.Contains(string(got[0].Spec), `"replicas":4`) {
		t.Fatalf("a rejected write changed the store: %s", got[0].Spec)
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	inst := servertest.Start(t, "")
	huge := append([]byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: big}\n# "), bytes.Repeat([]byte("x"), 2<<20)...)
	cases := map[string]struct {
		c      call
		code   int
		reason string
		field  string
	}{
		"too large":     {call{"POST", server.BasePath, tok, huge}, 413, "RequestEntityTooLarge", ""},
		"malformed":     {call{"POST", server.BasePath, tok, []byte(`{"metadata": {"name": "x"`)}, 400, "BadRequest", ""},
		"not yaml":      {call{"POST", server.BasePath, tok, []byte("metadata: [unclosed\n")}, 400, "BadRequest", ""},
		"invalid":       {call{"POST", server.BasePath, tok, []byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: x}\nspec: {replicas: 0, loadBalancer: {balence: x}}\n")}, 422, "Invalid", "spec.loadBalancer.balence"},
		"name mismatch": {call{"PUT", server.BasePath + "/other", tok, iot(t)}, 400, "BadRequest", ""},
		"bad rv":        {call{"POST", server.BasePath, tok, bytes.Replace(iot(t), []byte("  name: iot\n"), []byte("  name: iot\n  resourceVersion: abc\n"), 1)}, 422, "Invalid", "metadata.resourceVersion"},
		"bad selector":  {call{"GET", server.BasePath + "?labelSelector=%3D%3D%3D", tok, nil}, 400, "BadRequest", ""},
		"unknown route": {call{"GET", "/apis/other", tok, nil}, 404, "NotFound", ""},
		// A body is one object, whole: nothing after it is dropped silently.
		"two documents":          {call{"POST", server.BasePath, tok, append(iot(t), []byte("---\napiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: second}\n")...)}, 400, "BadRequest", ""},
		"trailing data":          {call{"POST", server.BasePath, tok, []byte(`{"apiVersion":"mqtt.swarm/v1alpha1","kind":"MqttCluster","metadata":{"name":"x"}} {"more":1}`)}, 400, "BadRequest", ""},
		"document end then more": {call{"POST", server.BasePath, tok, append(iot(t), []byte("...\nspec: {replicas: 9}\n")...)}, 400, "BadRequest", ""},
		"empty body":             {call{"POST", server.BasePath, tok, []byte{}}, 400, "BadRequest", ""},
		"whitespace":             {call{"POST", server.BasePath, tok, []byte(" \n\t\n")}, 400, "BadRequest", ""},
		"null":                   {call{"POST", server.BasePath, tok, []byte("null")}, 400, "BadRequest", ""},
		"a list":                 {call{"POST", server.BasePath, tok, []byte("[1, 2]")}, 400, "BadRequest", ""},
		"a number":               {call{"PUT", server.BasePath + "/x", tok, []byte("42")}, 400, "BadRequest", ""},
		"overflow":               {call{"POST", server.BasePath, tok, []byte(`{"apiVersion":"mqtt.swarm/v1alpha1","kind":"MqttCluster","metadata":{"name":"x"},"spec":{"replicas":1e20}}`)}, 422, "Invalid", "spec.replicas"},
		"wrong type":             {call{"POST", server.BasePath, tok, []byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: x}\nspec: {replicas: [3]}\n")}, 422, "Invalid", "spec.replicas"},
		"fraction":               {call{"POST", server.BasePath, tok, []byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: x}\nspec: {replicas: 2.5}\n")}, 422, "Invalid", "spec.replicas"},
	}
	for name, c := range cases {
		code, body := do(t, inst.URL, c.c)
		if code != c.code {
			t.Errorf("%s: %d, want %d: %.300s", name, code, c.code, body)
			continue
		}
		st := status(t, body)
		if st.Reason != c.reason || st.Code != c.code || st.Message == "" {
			t.Errorf("%s: status %+v", name, st)
		}
		// Messages are for people: no Go type names, no empty field path.
		if strings.Contains(string(body), "Go struct") || strings.Contains(string(body), "int32") || strings.Contains(string(body), "api.") {
			t.Errorf("%s: a Go type in the answer: %s", name, body)
		}
		if st.Details != nil {
			for _, cause := range st.Details.Causes {
				if c.code == 422 && cause.Field == "" {
					t.Errorf("%s: a cause with no field path: %+v", name, cause)
				}
			}
		}
		if c.field != "" {
			found := false
			for _, cause := range st.Details.Causes {
				found = found || cause.Field == c.field
			}
			if !found {
				t.Errorf("%s: no cause for %s in %+v", name, c.field, st.Details)
			}
		}
	}
	if objs, _ := inst.Store.List(api.KindMqttCluster); len(objs) != 0 {
		t.Fatalf("rejected requests stored %d objects", len(objs))
	}
}

// TestBadStatusWrites: a status write is validated (condition types,
// reasons, states, generations, endpoints) and refused whole otherwise; an
// empty body or a name that differs from the URL is 400; nothing changes.
func TestBadStatusWrites(t *testing.T) {
	t.Parallel()
	inst := servertest.Start(t, "")
	if code, body := do(t, inst.URL, call{"POST", server.BasePath, tok, iot(t)}); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	before := inst.Store.Get(api.KindMqttCluster, "iot")
	st := func(status string) []byte {
		return []byte(`{"apiVersion":"mqtt.swarm/v1alpha1","kind":"MqttCluster","metadata":{"name":"iot"},"status":` + status + `}`)
	}
	path := server.BasePath + "/iot/status"
	cases := map[string]struct {
		body  []byte
		code  int
		field string
	}{
		"empty body":         {[]byte(""), 400, ""},
		"null":               {[]byte("null"), 400, ""},
		"name mismatch":      {bytes.Replace(st(`{}`), []byte(`"name":"iot"`), []byte(`"name":"other"`), 1), 400, ""},
		"made-up reason":     {st(`{"conditions":[{"type":"Ready","status":"True","reason":"Fake","message":"x","lastTransitionTime":"2026-01-01T00:00:00Z"}]}`), 422, "status.conditions[0].reason"},
		"unknown type":       {st(`{"conditions":[{"type":"Happy","status":"True","reason":"AllRunning","message":"x","lastTransitionTime":"2026-01-01T00:00:00Z"}]}`), 422, "status.conditions[0].type"},
		"bad state":          {st(`{"conditions":[{"type":"Ready","status":"Yes","reason":"AllRunning","message":"x","lastTransitionTime":"2026-01-01T00:00:00Z"}]}`), 422, "status.conditions[0].status"},
		"future generation":  {st(`{"observedGeneration":99}`), 422, "status.observedGeneration"},
		"endpoint not a URL": {st(`{"endpoints":["http://x"]}`), 422, "status.endpoints[0]"},
	}
	for name, c := range cases {
		code, body := do(t, inst.URL, call{"PUT", path, tok, c.body})
		if code != c.code {
			t.Errorf("%s: %d, want %d: %.300s", name, code, c.code, body)
			continue
		}
		if c.field != "" {
			found := false
			for _, cause := range status(t, body).Details.Causes {
				found = found || cause.Field == c.field
			}
			if !found {
				t.Errorf("%s: no cause for %s: %s", name, c.field, body)
			}
		}
	}
	if after := inst.Store.Get(api.KindMqttCluster, "iot"); after.ModifyIndex != before.ModifyIndex {
		t.Fatal("a refused status write changed the object")
	}
}

func TestLeaderAndPeers(t *testing.T) {
	t.Parallel()
	inst := servertest.Start(t, "")
	code, body := do(t, inst.URL, call{method: "GET", path: "/v1/status/leader"})
	var l map[string]any
	if code != 200 || json.Unmarshal(body, &l) != nil {
		t.Fatalf("%d %s", code, body)
	}
	if l["isLeader"] != true || l["leaderID"] != inst.Store.NodeID() || l["leaderAddress"] == "" || l["term"].(float64) < 1 {
		t.Fatalf("leader: %s", body)
	}
	code, body = do(t, inst.URL, call{method: "GET", path: "/v1/status/peers"})
	if code != 200 || !strings.Contains(string(body), inst.Store.NodeID()) || !strings.Contains(string(body), `"Voter"`) {
		t.Fatalf("peers: %d %s", code, body)
	}
	code, body = do(t, inst.URL, call{method: "GET", path: "/metrics"})
	for _, m := range []string{"mqttoperator_raft_leader 1", `mqttoperator_objects{kind="MqttCluster"} 0`, "mqttoperator_api_requests_total"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %q", m)
		}
	}
}
