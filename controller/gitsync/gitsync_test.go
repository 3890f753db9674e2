package gitsync

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store/storetest"
)

// gitRepo is a bare repository (what the operator reads) and a working
// clone the test commits and pushes from, with the git CLI.
type gitRepo struct {
	t          *testing.T
	bare, work string
}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	dir := t.TempDir()
	r := &gitRepo{t: t, bare: filepath.Join(dir, "clusters.git"), work: filepath.Join(dir, "work")}
	r.git(dir, "init", "-q", "--bare", "-b", "main", r.bare)
	r.git(dir, "clone", "-q", r.bare, r.work)
	r.git(r.work, "checkout", "-q", "-b", "main")
	return r
}

func (r *gitRepo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes (content != "") or removes files, commits and pushes; it
// returns the commit.
func (r *gitRepo) commit(files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.work, name)
		if content == "" {
			r.git(r.work, "rm", "-q", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
		r.git(r.work, "add", name)
	}
	r.git(r.work, "commit", "-q", "-m", "change")
	r.git(r.work, "push", "-q", "origin", "main")
	return r.git(r.work, "rev-parse", "HEAD")
}

func clusterDoc(name string, replicas int) string {
	return fmt.Sprintf("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: %s}\nspec: {replicas: %d}\n", name, replicas)
}

func replicasOf(s *store.Store, name string) int {
	o := s.Get(api.KindMqttCluster, name)
	if o == nil {
		return -1
	}
	var spec api.MqttClusterSpec
	_ = json.Unmarshal(o.Spec, &spec)
	return int(*spec.Replicas)
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !f() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func gitStatus(t *testing.T, s *store.Store) api.GitSyncStatus {
	st, _ := (&objects.Objects{Store: s}).GitSyncStatus()
	return st
}

func TestGitSyncAppliesPrunesAndPutsBackDrift(t *testing.T) {
	s := openStore(t)
	repo := newGitRepo(t)
	c1 := repo.commit(map[string]string{
		"clusters/a.yaml": clusterDoc("a", 3), "clusters/b.yaml": clusterDoc("b", 1),
		"README.md": "not a cluster", "other/c.yaml": clusterDoc("c", 1),
	})
	// A cluster applied by hand: never pruned by the git sync.
	if _, _, err := s.Apply(store.ApplyRequest{Kind: api.KindMqttCluster, Name: "manual", Spec: []byte(`{"replicas":1}`)}); err != nil {
		t.Fatal(err)
	}
	g := &Syncer{Objects: &objects.Objects{Store: s}, Defaults: api.BuiltinDefaults(), Repo: repo.bare, Branch: "main", Path: "clusters", Interval: 300 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan struct{})
	go func() { g.Run(ctx); close(ran) }()
	eventually(t, "the first commit applied", 5*time.Second, func() bool { return gitStatus(t, s).Commit == c1 })
	if replicasOf(s, "a") != 3 || replicasOf(s, "b") != 1 || replicasOf(s, "c") != -1 {
		t.Fatalf("applied: a %d b %d c %d", replicasOf(s, "a"), replicasOf(s, "b"), replicasOf(s, "c"))
	}
	if o := s.Get(api.KindMqttCluster, "a"); o.Labels[LabelManagedBy] != ManagedByGit {
		t.Fatalf("labels: %v", o.Labels)
	}
	// A commit is applied within the interval.
	repo.commit(map[string]string{"clusters/a.yaml": clusterDoc("a", 5)})
	took := eventually(t, "the change applied", 5*time.Second, func() bool { return replicasOf(s, "a") == 5 })
	t.Logf("commit -> applied in %s (interval 300ms)", took)
	// From here each step syncs once, by hand: what a sync reports (Pruned,
	// Drift) is read before a later poll of the same commit replaces it.
	cancel()
	<-ran
	ctx = context.Background()
	// A file removed: its cluster pruned; the hand-made one stays.
	c3 := repo.commit(map[string]string{"clusters/b.yaml": ""})
	if _, err := g.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := gitStatus(t, s); replicasOf(s, "b") != -1 || st.Commit != c3 || !slices.Equal(st.Pruned, []string{"b"}) {
		t.Fatalf("b not pruned, or not said so: b %d, %+v", replicasOf(s, "b"), st)
	}
	if replicasOf(s, "manual") != 1 {
		t.Fatalf("after the removal: manual %d", replicasOf(s, "manual"))
	}
	// Edited live (mqttctl apply): the drift is reported, git's spec put back.
	if _, _, err := s.Apply(store.ApplyRequest{Kind: api.KindMqttCluster, Name: "a", Spec: []byte(`{"replicas":2}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := gitStatus(t, s); !slices.Equal(st.Drift, []string{"a"}) || replicasOf(s, "a") != 5 {
		t.Fatalf("the drift not reported or not put back: a %d, %+v", replicasOf(s, "a"), st)
	}
	// An invalid document: nothing applied, the error said, the last good
	// commit kept.
	repo.commit(map[string]string{"clusters/a.yaml": clusterDoc("a", 99), "clusters/d.yaml": clusterDoc("d", 1)})
	if _, err := g.Sync(ctx); err == nil || !strings.Contains(gitStatus(t, s).LastError, "spec.replicas") {
		t.Fatalf("the error not reported: %v %+v", err, gitStatus(t, s))
	}
	if st := gitStatus(t, s); st.Commit != c3 || replicasOf(s, "d") != -1 || replicasOf(s, "a") != 5 {
		t.Fatalf("after an invalid commit: %+v d %d a %d", st, replicasOf(s, "d"), replicasOf(s, "a"))
	}
}

func TestGitSyncWebhookSyncsAtOnce(t *testing.T) {
	s := openStore(t)
	repo := newGitRepo(t)
	c1 := repo.commit(map[string]string{"a.yaml": clusterDoc("a", 3)})
	g := &Syncer{Objects: &objects.Objects{Store: s}, Defaults: api.BuiltinDefaults(), Repo: "file://" + repo.bare, Branch: "main", Interval: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Run(ctx)
	eventually(t, "the first sync when started", 5*time.Second, func() bool { return gitStatus(t, s).Commit == c1 })
	repo.commit(map[string]string{"a.yaml": clusterDoc("a", 4)})
	start := time.Now()
	g.Trigger()
	eventually(t, "the webhook's sync", 2*time.Second, func() bool { return replicasOf(s, "a") == 4 })
	t.Logf("webhook -> applied in %s (interval 1h)", time.Since(start))
}

// TestGitSyncCredentialsFromAFileNeverShown: a remote behind HTTP basic
// auth (git http-backend, the real server side) is read with the token
// from a credentials file; without it the fetch fails. A URL carrying
// credentials is refused; the token appears in no log line, status, raft
// record or error.
func TestGitSyncCredentialsFromAFileNeverShown(t *testing.T) {
	t.Parallel()
	const token = "s3cr3t-token-4f9a"
	r := newGitRepo(t)
	r.commit(map[string]string{"iot.yaml": clusterDoc("iot", 3)})
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(r.git(r.work, "--exec-path")), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(r.bare), "GIT_HTTP_EXPORT_ALL=1"},
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if u, p, ok := req.BasicAuth(); !ok || u != "deploy" || p != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, req)
	}))
	defer hs.Close()
	repoURL := hs.URL + "/clusters.git"

	if err := RepoError(strings.Replace(repoURL, "http://", "http://deploy:"+token+"@", 1)); err == nil || strings.Contains(err.Error(), token) {
		t.Fatalf("a URL with credentials: %v", err)
	}
	credFile := filepath.Join(t.TempDir(), "git-credentials")
	if err := os.WriteFile(credFile, []byte("deploy:"+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := GitAuth(credFile, "")
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))

	s := openStore(t)
	without := &Syncer{Objects: &objects.Objects{Store: s}, Defaults: api.BuiltinDefaults(), Repo: repoURL, Branch: "main", Interval: time.Hour, Log: log}
	if _, err := without.Sync(context.Background()); err == nil {
		t.Fatal("a protected remote was read with no credentials")
	}
	with := &Syncer{Objects: &objects.Objects{Store: s}, Defaults: api.BuiltinDefaults(), Repo: repoURL, Branch: "main", Interval: time.Hour, Log: log, Auth: auth}
	if _, err := with.Sync(context.Background()); err != nil {
		t.Fatalf("sync with the credentials file: %v", err)
	}
	if replicasOf(s, "iot") != 3 {
		t.Fatal("the cluster in the protected repository was not applied")
	}
	// Nowhere: logs, the stored status, any raft record.
	var raftData strings.Builder
	for _, kind := range []string{objects.KindGitSync, api.KindMqttCluster} {
		objs, _ := s.List(kind)
		for _, o := range objs {
			b, _ := json.Marshal(o)
			raftData.Write(b)
		}
	}
	for where, text := range map[string]string{"logs": logs.String(), "raft records": raftData.String()} {
		if strings.Contains(text, token) {
			t.Errorf("the token is in the %s", where)
		}
	}
	for _, bad := range []string{"", "a\nb"} {
		if err := os.WriteFile(credFile, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := GitAuth(credFile, ""); err == nil {
			t.Errorf("credentials file %q accepted", bad)
		}
	}
	if got := RedactURL("https://user:" + token + "@git.example.com/r.git"); strings.Contains(got, token) || strings.Contains(got, "user") {
		t.Errorf("redacted URL: %s", got)
	}
}

func openStore(t *testing.T) *store.Store { return storetest.Open(t) }

// TestGitSyncAppliesAndPrunesUsers: users in the commit are applied after
// their clusters and pruned when their file goes; a user naming a cluster
// neither in the commit nor stored stops the whole commit.
func TestGitSyncAppliesAndPrunesUsers(t *testing.T) {
	s := openStore(t)
	repo := newGitRepo(t)
	user := "apiVersion: mqtt.swarm/v1alpha1\nkind: MqttUser\nmetadata: {name: dev1}\nspec: {cluster: a}\n"
	c1 := repo.commit(map[string]string{"clusters/users.yaml": user, "clusters/a.yaml": clusterDoc("a", 3)})
	// Each step syncs once, by hand: what a sync reports (Applied, Pruned)
	// is read before any later poll of the same commit replaces it.
	g := &Syncer{Objects: &objects.Objects{Store: s}, Defaults: api.BuiltinDefaults(), Repo: repo.bare, Branch: "main", Path: "clusters", Interval: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	if _, err := g.Sync(ctx); err != nil || gitStatus(t, s).Commit != c1 {
		t.Fatalf("the commit not applied: %v %+v", err, gitStatus(t, s))
	}
	if o := s.Get(api.KindMqttUser, "dev1"); o == nil || o.Labels[LabelManagedBy] != ManagedByGit {
		t.Fatalf("the user is not applied: %+v", o)
	}
	if st := gitStatus(t, s); !slices.Contains(st.Applied, "mqttuser/dev1") || !slices.Contains(st.Applied, "a") {
		t.Fatalf("applied: %v", st.Applied)
	}
	orphan := "apiVersion: mqtt.swarm/v1alpha1\nkind: MqttUser\nmetadata: {name: dev2}\nspec: {cluster: nowhere}\n"
	repo.commit(map[string]string{"clusters/orphan.yaml": orphan})
	if _, err := g.Sync(ctx); err == nil || !strings.Contains(gitStatus(t, s).LastError, "nowhere") {
		t.Fatalf("the orphan not refused: %v %+v", err, gitStatus(t, s))
	}
	if s.Get(api.KindMqttUser, "dev2") != nil {
		t.Fatal("a user of an unknown cluster was stored")
	}
	c3 := repo.commit(map[string]string{"clusters/orphan.yaml": "", "clusters/users.yaml": ""})
	if _, err := g.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := gitStatus(t, s); st.Commit != c3 || s.Get(api.KindMqttUser, "dev1") != nil || !slices.Contains(st.Pruned, "mqttuser/dev1") {
		t.Fatalf("the user not pruned, or not said so: %+v", st)
	}
}
