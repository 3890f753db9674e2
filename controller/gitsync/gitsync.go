package gitsync

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/metrics"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

// LabelManagedBy marks the clusters a git sync applied: only those are
// pruned when their file leaves the repository.
const (
	LabelManagedBy = "mqtt.swarm/managed-by"
	ManagedByGit   = "gitsync"
)

// Syncer applies the clusters of a git repository (pull-based, as Flux
// does): on the raft leader, every Interval and on Trigger (the webhook),
// it reads the branch's files under Path (.yaml, .yml, .json), admits
// every document exactly as the API does (all or nothing), applies them
// with the label mqtt.swarm/managed-by=gitsync, deletes the labelled
// clusters whose document left, and reports the commit, the last error
// and the drift it found (a live spec that differed from git, put back)
// in its status (GET /v1/gitsync) and metrics.
type Syncer struct {
	Objects  *objects.Objects
	Defaults api.Defaults
	// Repo is a local path or any URL go-git can reach, with no
	// credentials in it (RepoError refuses one); Branch and Path select the
	// files.
	Repo, Branch, Path string
	// Auth authenticates to a remote (GitAuth: from a credentials file);
	// nil: none.
	Auth     transport.AuthMethod
	Interval time.Duration
	Log      *slog.Logger
	Metrics  *metrics.Metrics
	Now      func() time.Time

	once    sync.Once
	trigger chan struct{}
}

func (g *Syncer) init() {
	g.once.Do(func() { g.trigger = make(chan struct{}, 1) })
}

// Trigger asks for a sync now (the webhook).
func (g *Syncer) Trigger() {
	g.init()
	select {
	case g.trigger <- struct{}{}:
	default:
	}
}

func (g *Syncer) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// Run syncs at once, then every Interval and on Trigger, until ctx ends:
// the leader runs it while it leads (see package leader).
func (g *Syncer) Run(ctx context.Context) {
	g.init()
	t := time.NewTicker(g.Interval)
	defer t.Stop()
	for {
		if _, err := g.Sync(ctx); err != nil && ctx.Err() == nil {
			g.Log.Warn("git sync failed", "repo", RedactURL(g.Repo), "branch", g.Branch, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-g.trigger:
		}
	}
}

// Sync runs one sync and stores its status.
func (g *Syncer) Sync(ctx context.Context) (api.GitSyncStatus, error) {
	st, _ := g.Objects.GitSyncStatus()
	st.Repo, st.Branch, st.Path = RedactURL(g.Repo), g.Branch, g.Path
	st.LastAttempt = metaTime(g.now())
	commit, err := g.sync(ctx, &st)
	if err != nil {
		st.LastError = err.Error()
		g.Metrics.GitSync(false, nil)
	} else {
		st.LastError = ""
		st.Commit = commit
		st.LastSuccess = st.LastAttempt
		g.Metrics.GitSync(true, &st)
	}
	return st, errors.Join(err, g.Objects.SetGitSyncStatus(st))
}

func (g *Syncer) sync(ctx context.Context, st *api.GitSyncStatus) (string, error) {
	docs, commit, err := g.read(ctx)
	if err != nil {
		return "", err
	}
	// All or nothing: every document is admitted before any is applied.
	objs, users, seen, err := g.admit(docs, commit)
	if err != nil {
		return "", err
	}
	errs := g.applyClusters(st, objs, commit)
	// Users after the clusters they name.
	errs = append(errs, g.applyUsers(st, users, commit)...)
	// Prune what git no longer has, among what git applied.
	if len(errs) == 0 {
		errs = append(errs, g.pruneUsers(st, seen, commit)...)
	}
	if len(errs) == 0 {
		errs = append(errs, g.pruneClusters(st, seen, commit)...)
	}
	slices.Sort(st.Applied)
	if len(st.Drift) > 0 {
		st.LastDrift, st.LastDriftTime = st.Drift, st.LastAttempt
	}
	return commit, errors.Join(errs...)
}

// applyClusters applies the commit's clusters (labelled as git's), putting
// back what was changed by hand since the same commit was applied (the
// drift is reported), and resets the status's lists.
func (g *Syncer) applyClusters(st *api.GitSyncStatus, objs []*api.MqttCluster, commit string) []error {
	prevCommit, prevApplied := st.Commit, st.Applied
	st.Applied, st.Drift, st.Pruned = nil, nil, nil
	var errs []error
	for _, obj := range objs {
		if obj.Labels == nil {
			obj.Labels = map[string]string{}
		}
		obj.Labels[LabelManagedBy] = ManagedByGit
		res, _, stored, err := g.Objects.Preview(obj)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if stored != nil && res != api.Unchanged && prevCommit == commit && slices.Contains(prevApplied, obj.Name) {
			// The same commit was applied before: the live object was
			// changed by hand since. Git wins; the drift is reported.
			st.Drift = append(st.Drift, obj.Name)
			g.Log.Warn("git sync: the live cluster differs from git; putting git's back", "cluster", obj.Name, "commit", short(commit))
		}
		res, _, err = g.Objects.Apply(obj, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("apply mqttcluster/%s: %w", obj.Name, err))
			continue
		}
		if res != api.Unchanged {
			g.Log.Info("git sync applied", "cluster", obj.Name, "result", res, "commit", short(commit))
		}
		st.Applied = append(st.Applied, obj.Name)
	}
	return errs
}

// applyUsers applies the commit's users (labelled as git's).
func (g *Syncer) applyUsers(st *api.GitSyncStatus, users []*api.MqttUser, commit string) []error {
	var errs []error
	for _, u := range users {
		if u.Labels == nil {
			u.Labels = map[string]string{}
		}
		u.Labels[LabelManagedBy] = ManagedByGit
		res, _, err := g.Objects.ApplyUser(u, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("apply mqttuser/%s: %w", u.Name, err))
			continue
		}
		if res != api.Unchanged {
			g.Log.Info("git sync applied", "user", u.Name, "result", res, "commit", short(commit))
		}
		st.Applied = append(st.Applied, "mqttuser/"+u.Name)
	}
	return errs
}

// pruneClusters deletes the git-managed clusters the commit no longer has.
func (g *Syncer) pruneClusters(st *api.GitSyncStatus, seen map[string]string, commit string) []error {
	var errs []error
	managed, _, err := g.Objects.Clusters(labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByGit}))
	if err != nil {
		return []error{err}
	}
	for _, o := range managed {
		if seen[o.Name] != "" {
			continue
		}
		if _, err := g.Objects.Delete(o.Name, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, fmt.Errorf("prune mqttcluster/%s: %w", o.Name, err))
			continue
		}
		g.Log.Info("git sync pruned", "cluster", o.Name, "commit", short(commit))
		st.Pruned = append(st.Pruned, o.Name)
	}
	return errs
}

// pruneUsers deletes the git-managed users the commit no longer has.
func (g *Syncer) pruneUsers(st *api.GitSyncStatus, seen map[string]string, commit string) []error {
	var errs []error
	managed, _, err := g.Objects.Users(labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByGit}))
	if err != nil {
		return []error{err}
	}
	for _, u := range managed {
		if seen["mqttuser/"+u.Name] != "" {
			continue
		}
		if _, err := g.Objects.DeleteUser(u.Name, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, fmt.Errorf("prune mqttuser/%s: %w", u.Name, err))
			continue
		}
		g.Log.Info("git sync pruned", "user", u.Name, "commit", short(commit))
		st.Pruned = append(st.Pruned, "mqttuser/"+u.Name)
	}
	return errs
}

// admit parses every document of the commit's files; the clusters, the
// users (each naming a cluster of the commit or a stored one), and where
// each was found (users as mqttuser/NAME), or an error naming every
// invalid document.
func (g *Syncer) admit(docs []gitFile, commit string) ([]*api.MqttCluster, []*api.MqttUser, map[string]string, error) {
	var objs []*api.MqttCluster
	var users []*api.MqttUser
	seen := map[string]string{}
	var bad []string
	for _, d := range docs {
		for i, doc := range api.SplitDocuments(d.data) {
			where := fmt.Sprintf("%s#%d", d.name, i+1)
			if api.KindOf(doc) == api.KindMqttUser {
				u, err := api.ParseUser(doc)
				if err != nil {
					bad = append(bad, where+": "+err.Error())
					continue
				}
				if prev, dup := seen["mqttuser/"+u.Name]; dup {
					bad = append(bad, fmt.Sprintf("%s: mqttuser/%s is also in %s", where, u.Name, prev))
					continue
				}
				seen["mqttuser/"+u.Name] = where
				users = append(users, u)
				continue
			}
			obj, err := api.Parse(doc, g.Defaults)
			if err != nil {
				bad = append(bad, where+": "+err.Error())
				continue
			}
			if prev, dup := seen[obj.Name]; dup {
				bad = append(bad, fmt.Sprintf("%s: mqttcluster/%s is also in %s", where, obj.Name, prev))
				continue
			}
			seen[obj.Name] = where
			objs = append(objs, obj)
		}
	}
	for _, u := range users {
		if seen[u.Spec.Cluster] == "" {
			if _, err := g.Objects.Cluster(u.Spec.Cluster); err != nil {
				bad = append(bad, fmt.Sprintf("%s: spec.cluster: MqttCluster %q is neither in the commit nor stored", seen["mqttuser/"+u.Name], u.Spec.Cluster))
			}
		}
	}
	if len(bad) > 0 {
		return nil, nil, nil, fmt.Errorf("commit %s: nothing applied, %d invalid documents: %s", short(commit), len(bad), strings.Join(bad, "; "))
	}
	return objs, users, seen, nil
}

type gitFile struct {
	name string
	data []byte
}

// read fetches the branch and returns its files under Path, in name
// order, and the commit. A local path (or file://) is opened in place, in
// process (the operator's image has no git binary); a remote is cloned
// into memory, the branch only.
func (g *Syncer) read(ctx context.Context) ([]gitFile, string, error) {
	var repo *git.Repository
	var err error
	if local, ok := localPath(g.Repo); ok {
		repo, err = git.PlainOpen(local)
	} else {
		repo, err = git.CloneContext(ctx, memory.NewStorage(), nil, &git.CloneOptions{
			URL: g.Repo, ReferenceName: plumbing.NewBranchReferenceName(g.Branch), SingleBranch: true, Tags: git.NoTags, Auth: g.Auth,
		})
	}
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s: %s", RedactURL(g.Repo), RedactText(err.Error(), g.Repo))
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName(g.Branch), true)
	if err != nil {
		return nil, "", fmt.Errorf("%s branch %s: %w", g.Repo, g.Branch, err)
	}
	c, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, "", err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, "", err
	}
	dir := strings.Trim(path.Clean("/"+g.Path), "/")
	var out []gitFile
	err = tree.Files().ForEach(func(f *object.File) error {
		if dir != "" && !strings.HasPrefix(f.Name, dir+"/") {
			return nil
		}
		switch path.Ext(f.Name) {
		case ".yaml", ".yml", ".json":
		default:
			return nil
		}
		r, err := f.Reader()
		if err != nil {
			return err
		}
		defer r.Close()
		b, err := io.ReadAll(io.LimitReader(r, 4<<20))
		if err != nil {
			return err
		}
		out = append(out, gitFile{name: f.Name, data: b})
		return nil
	})
	slices.SortFunc(out, func(a, b gitFile) int { return strings.Compare(a.name, b.name) })
	return out, ref.Hash().String(), err
}

// RedactURL hides a URL's user information (a user name can itself be a
// token): what logs, status, metrics, the API and the raft log show.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.LastIndex(raw, "@"); i >= 0 && strings.Contains(raw[:i], "://") {
			return raw[:strings.Index(raw, "://")+3] + "REDACTED" + raw[i:]
		}
		return raw
	}
	if u.User == nil {
		return raw
	}
	u.User = url.User("REDACTED")
	return u.String()
}

// RedactText removes a URL's user information from a message (an error a
// library built from it).
func RedactText(msg, raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return msg
	}
	msg = strings.ReplaceAll(msg, raw, RedactURL(raw))
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, "REDACTED")
	}
	if n := u.User.Username(); n != "" {
		msg = strings.ReplaceAll(msg, n, "REDACTED")
	}
	return msg
}

// RepoError refuses a repository URL that carries credentials: they would
// sit in the service spec, the process list and the logs. They belong in
// the credentials file (--git-credentials-file, a Docker secret).
func RepoError(raw string) error {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return fmt.Errorf("--git-repo %s carries user information: put credentials in --git-credentials-file (a Docker secret) instead", RedactURL(raw))
	}
	return nil
}

// GitAuth reads a credentials file: an SSH private key (PEM), used with
// knownHosts (a known_hosts file; required for SSH); "user:token"; or a
// token alone (HTTP basic auth as user "git", which GitHub, GitLab and
// Gitea accept). Errors never quote the file.
func GitAuth(file, knownHosts string) (transport.AuthMethod, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--git-credentials-file: %w", err)
	}
	text := strings.TrimSpace(string(b))
	if text == "" {
		return nil, errors.New("--git-credentials-file is empty")
	}
	if strings.HasPrefix(text, "-----BEGIN") {
		keys, err := gitssh.NewPublicKeys("git", []byte(text+"\n"), "")
		if err != nil {
			return nil, errors.New("--git-credentials-file: the SSH private key does not parse (a passphrase-less PEM key is needed)")
		}
		if knownHosts == "" {
			return nil, errors.New("--git-credentials-file holds an SSH key: --git-known-hosts-file is required (host keys are checked)")
		}
		cb, err := gitssh.NewKnownHostsCallback(knownHosts)
		if err != nil {
			return nil, fmt.Errorf("--git-known-hosts-file: %w", err)
		}
		keys.HostKeyCallback = cb
		return keys, nil
	}
	if strings.ContainsAny(text, "\n\r") {
		return nil, errors.New("--git-credentials-file: want one line (user:token or a token) or an SSH private key")
	}
	user, tok, ok := strings.Cut(text, ":")
	if !ok {
		user, tok = "git", text
	}
	return &githttp.BasicAuth{Username: user, Password: tok}, nil
}

// localPath is the directory of a local repository URL.
func localPath(repo string) (string, bool) {
	if p, ok := strings.CutPrefix(repo, "file://"); ok {
		return p, true
	}
	if strings.HasPrefix(repo, "/") || strings.HasPrefix(repo, ".") {
		return repo, true
	}
	return "", false
}

func short(h string) string { return h[:min(len(h), 12)] }

func metaTime(v time.Time) *metav1.Time {
	if v.IsZero() {
		return nil
	}
	mt := metav1.NewTime(v.UTC().Truncate(time.Second))
	return &mt
}
