package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server/servertest"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

const userDoc = "apiVersion: mqtt.swarm/v1alpha1\nkind: MqttUser\nmetadata: {name: dash}\nspec:\n  cluster: iot\n  authorization: {acls: [{topic: \"a/#\", access: read}]}\n"

// TestUserRoutes: a user of an unknown cluster is refused on spec.cluster
// and nothing is stored; then create, get, list, the credentials (404
// until the leader made the password, then the password), a rotation
// request, delete.
func TestUserRoutes(t *testing.T) {
	t.Parallel()
	in := servertest.Start(t, "")
	code, b := do(t, in.URL, call{method: http.MethodPost, path: api.UserBasePath, token: tok, body: []byte(userDoc)})
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(b), `"field": "spec.cluster"`) {
		t.Fatalf("user of an unknown cluster: %d %s", code, b)
	}
	if in.Store.Get(objects.KindUser, "dash") != nil {
		t.Fatal("a refused user was stored")
	}
	bad := strings.Replace(userDoc, "a/#", "a/#/b", 1)
	if code, b := do(t, in.URL, call{method: http.MethodPost, path: api.UserBasePath, token: tok, body: []byte(bad)}); code != http.StatusUnprocessableEntity || !strings.Contains(string(b), "spec.authorization.acls[0].topic") {
		t.Fatalf("invalid user: %d %s", code, b)
	}
	createCluster(t, in, "iot")
	if code, b := do(t, in.URL, call{method: http.MethodPost, path: api.UserBasePath, token: tok, body: []byte(userDoc)}); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, b)
	}
	if code, b := do(t, in.URL, call{method: http.MethodPost, path: api.UserBasePath, token: tok, body: []byte(userDoc)}); code != http.StatusOK || !strings.Contains(string(b), `"unchanged"`) {
		t.Fatalf("re-apply: %d %s", code, b)
	}
	code, b = do(t, in.URL, call{method: http.MethodGet, path: api.UserBasePath, token: tok})
	var list api.MqttUserList
	if code != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list.Items) != 1 || list.Items[0].Spec.Cluster != "iot" {
		t.Fatalf("list: %d %s", code, b)
	}
	_, metrics := do(t, in.URL, call{method: http.MethodGet, path: "/metrics"})
	if !strings.Contains(string(metrics), `mqttoperator_users{cluster="iot"} 1`) || !strings.Contains(string(metrics), `mqttoperator_user_applied{cluster="iot",user="dash"} 0`) {
		t.Errorf("user metrics missing:\n%s", metrics)
	}
	code, b = do(t, in.URL, call{method: http.MethodGet, path: api.UserBasePath + "/dash/credentials", token: tok})
	if code != http.StatusNotFound || !strings.Contains(status(t, b).Message, "not made yet") {
		t.Fatalf("credentials before the leader: %d %s", code, b)
	}
	m := storeCredentials(t, in, "iot")
	sec, _ := credentials.NewUserSecret("dash", time.Now())
	m.Users = map[string]credentials.UserSecret{"dash": sec}
	spec, _ := json.Marshal(m)
	if _, _, err := in.Store.Apply(store.ApplyRequest{Kind: objects.KindCredentials, Name: "iot", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	code, b = do(t, in.URL, call{method: http.MethodGet, path: api.UserBasePath + "/dash/credentials", token: tok})
	var cred api.Credentials
	if code != http.StatusOK || json.Unmarshal(b, &cred) != nil || cred.Username != "dash" || cred.Password != sec.Password {
		t.Fatalf("credentials: %d", code)
	}
	if code, b := do(t, in.URL, call{method: http.MethodPost, path: api.UserBasePath + "/dash/password/rotate", token: tok}); code != http.StatusOK {
		t.Fatalf("rotate: %d %s", code, b)
	}
	if o := in.Store.Get(objects.KindUser, "dash"); o == nil || o.Annotations[api.RotatePasswordAnnotation] == "" {
		t.Fatal("the rotation request is not recorded")
	}
	// Re-applying the file keeps the pending rotation request.
	do(t, in.URL, call{method: http.MethodPost, path: api.UserBasePath, token: tok, body: []byte(userDoc)})
	if o := in.Store.Get(objects.KindUser, "dash"); o.Annotations[api.RotatePasswordAnnotation] == "" {
		t.Fatal("a re-apply dropped the rotation request")
	}
	if code, b := do(t, in.URL, call{method: http.MethodDelete, path: api.UserBasePath + "/dash", token: tok}); code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, b)
	}
	if code, _ := do(t, in.URL, call{method: http.MethodGet, path: api.UserBasePath + "/dash", token: tok}); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", code)
	}
}
