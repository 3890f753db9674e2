package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// MaxBodyBytes bounds a request body; past it the answer is 413.
const MaxBodyBytes = 1 << 20

// BasePath is the collection URL of MqttCluster objects.
const BasePath = api.BasePath

// Store is what the API needs of the store.
type Store interface {
	Apply(store.ApplyRequest) (store.Result, *store.Object, error)
	Delete(store.DeleteRequest) (*store.Object, error)
	UpdateStatus(store.StatusRequest) (store.Result, *store.Object, error)
	Get(kind, name string) *store.Object
	List(kind string) ([]*store.Object, uint64)
	Leader() store.LeaderInfo
	Peers() ([]store.Peer, error)
	CaughtUp() <-chan struct{}
	Barrier(timeout time.Duration) error
	Backup(w io.Writer) error
}

// catchUpWait bounds how long a read waits for the store to replay its log
// after a restart before answering 503.
const catchUpWait = 10 * time.Second

// Config configures the API.
type Config struct {
	Store    Store
	Defaults api.Defaults
	// Token is the bearer token every object route requires. Never logged.
	Token    string
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Forward, when set, sends writes (and consistent reads) that reach a
	// follower to the leader's API, over the transport it returns.
	Forward LeaderAPI
	// Sealer reads the clusters' encrypted material (nil: stored in clear).
	Sealer *credentials.Sealer
	// GitSyncTrigger, when the operator runs a git sync, asks it to sync
	// now (POST /v1/gitsync/webhook, on the leader).
	GitSyncTrigger func()
	// Version is the operator's build version (GET /version).
	Version string
}

// Server serves the HTTP API.
type Server struct {
	store     Store
	defaults  api.Defaults
	tokenHash [32]byte
	log       *slog.Logger
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	forward   LeaderAPI
	objects   *objects.Objects
	// gitSyncTrigger: see Config.GitSyncTrigger.
	gitSyncTrigger func()
	version        string
	// joined: this operator has once been part of its raft cluster (see
	// livez).
	joined atomic.Bool
}

// New returns a server. The token must not be empty.
func New(cfg Config) (*Server, error) {
	if cfg.Token == "" {
		return nil, errors.New("server: an API token is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{store: cfg.Store, defaults: cfg.Defaults, tokenHash: sha256.Sum256([]byte(cfg.Token)), log: cfg.Logger, reg: cfg.Registry,
		forward: cfg.Forward, objects: &objects.Objects{Store: cfg.Store, Sealer: cfg.Sealer}, gitSyncTrigger: cfg.GitSyncTrigger, version: cfg.Version}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mqttoperator_api_requests_total", Help: "HTTP API requests by route, method and status code.",
	}, []string{"route", "method", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mqttoperator_api_request_duration_seconds", Help: "HTTP API request latency by route and method.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "method"})
	if err := errors.Join(cfg.Registry.Register(s.requests), cfg.Registry.Register(s.latency), cfg.Registry.Register(newStoreCollector(cfg.Store, s.objects))); err != nil {
		return nil, err
	}
	return s, nil
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	open := func(pattern, route string, h http.HandlerFunc) { mux.Handle(pattern, s.instrument(route, h)) }
	authed := func(pattern, route string, h http.HandlerFunc) { mux.Handle(pattern, s.instrument(route, s.auth(h))) }

	open("GET /healthz", "healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	open("GET /readyz", "readyz", s.readyz)
	open("GET /livez", "livez", s.livez)
	open("GET /version", "version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, api.VersionInfo{Version: s.version, APIVersion: api.APIVersion, StorageVersion: objects.StorageVersion})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	open("GET /v1/status/leader", "leader", s.leader)
	open("GET /v1/status/peers", "peers", s.peers)

	// Reads wait until a restarted store has replayed its log, so nobody
	// sees an empty or old state; writes go through raft anyway.
	// Writes anywhere go to the leader (forwarded by a follower). Reads
	// are local, with the index headers, or consistent on request.
	write := func(h http.HandlerFunc) http.HandlerFunc { return s.toLeader(s.caughtUp(h)) }
	read := func(h http.HandlerFunc) http.HandlerFunc { return s.read(s.caughtUp(h)) }
	authed("GET "+BasePath, "list", read(s.list))
	authed("POST "+BasePath, "apply", write(s.apply))
	authed("GET "+BasePath+"/{name}", "get", read(s.get))
	authed("PUT "+BasePath+"/{name}", "apply", write(s.apply))
	authed("DELETE "+BasePath+"/{name}", "delete", s.toLeader(s.delete))
	authed("GET "+BasePath+"/{name}/status", "status", read(s.get))
	authed("PUT "+BasePath+"/{name}/status", "status", s.toLeader(s.putStatus))
	authed("GET "+BasePath+"/{name}/ca", "ca", read(s.getCA))
	authed("GET "+BasePath+"/{name}/events", "events", read(s.events))
	authed("GET "+BasePath+"/{name}/credentials", "credentials", read(s.getCredentials))
	authed("POST "+BasePath+"/{name}/certificate/renew", "renew", write(s.renewCertificate))
	authed("POST "+BasePath+"/{name}/ca/rotate", "rotate-ca", write(s.rotateCA))
	authed("POST "+BasePath+"/{name}/approve", "approve", write(s.approve))
	s.userRoutes(authed, read, write)
	authed("GET /v1/backup", "backup", s.toLeader(s.backup))
	authed("GET /v1/gitsync", "gitsync", read(s.gitSync))
	authed("POST /v1/gitsync/webhook", "gitsync-webhook", s.toLeader(s.gitSyncWebhook))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, ReasonNotFound, "no route for "+r.Method+" "+r.URL.Path, nil)
	})
	return mux
}

type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }

func (s *Server) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		d := time.Since(start)
		s.requests.WithLabelValues(route, r.Method, strconv.Itoa(rec.code)).Inc()
		s.latency.WithLabelValues(route, r.Method).Observe(d.Seconds())
		// Never the headers: they carry the token.
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "code", rec.code, "duration", d)
	})
}

// auth requires the bearer token: 401 without one, 403 with a wrong one.
// The comparison is of SHA-256 digests in constant time, so neither the
// token's bytes nor its length leak through timing.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(v, "Bearer ")
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mqtt-operator"`)
			writeStatus(w, http.StatusUnauthorized, ReasonUnauthorized, "a bearer token is required (mqttctl: --token-file, MQTTCTL_TOKEN_FILE or a context: mqttctl config get-contexts)", nil)
			return
		}
		got := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) != 1 {
			writeStatus(w, http.StatusForbidden, ReasonForbidden, "the bearer token is not valid", nil)
			return
		}
		h(w, r)
	}
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	l := s.store.Leader()
	if l.LeaderID == "" {
		writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, "no raft leader", nil)
		return
	}
	select {
	case <-s.store.CaughtUp():
	default:
		writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, "replaying the raft log", nil)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// livez is the container's health (the stack's healthcheck): ok once this
// operator has joined its raft cluster — a leader known, the log found on
// disk replayed and everything the leader committed applied — and from
// then on for as long as it answers. Swarm's rolling update of the
// operator moves to the next manager only once the new task is healthy,
// so a manager's operator is replaced only after the previous one has
// rejoined; and a partition or a lost quorum later does not make Swarm
// restart operators that are merely waiting (readyz says that).
func (s *Server) livez(w http.ResponseWriter, _ *http.Request) {
	if !s.joined.Load() {
		l := s.store.Leader()
		select {
		case <-s.store.CaughtUp():
		default:
			writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, "replaying the raft log", nil)
			return
		}
		if l.LeaderID == "" || l.AppliedIndex < l.CommitIndex {
			writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, fmt.Sprintf("not joined yet: leader %q, applied %d of %d", l.LeaderID, l.AppliedIndex, l.CommitIndex), nil)
			return
		}
		s.joined.Store(true)
	}
	_, _ = io.WriteString(w, "ok\n")
}

// caughtUp holds a request until the store has replayed its log (or the
// request's context or catchUpWait ends: 503).
func (s *Server) caughtUp(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.store.CaughtUp():
			h(w, r)
		case <-r.Context().Done():
		case <-time.After(catchUpWait):
			writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, "the operator is still replaying its raft log; retry", nil)
		}
	}
}

func (s *Server) leader(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.store.Leader())
}

func (s *Server) peers(w http.ResponseWriter, _ *http.Request) {
	p, err := s.store.Peers()
	if err != nil {
		writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"peers": p})
}

// selector reads ?labelSelector= (everything when absent), answering 400
// itself when it does not parse.
func selector(w http.ResponseWriter, r *http.Request) (labels.Selector, bool) {
	q := r.URL.Query().Get("labelSelector")
	if q == "" {
		return labels.Everything(), true
	}
	sel, err := labels.Parse(q)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, ReasonBadRequest, "labelSelector: "+err.Error(), nil)
		return nil, false
	}
	return sel, true
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	sel, ok := selector(w, r)
	if !ok {
		return
	}
	items, index, err := s.objects.Clusters(sel)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, ReasonInternal, err.Error(), nil)
		return
	}
	list := &api.MqttClusterList{Items: items}
	list.APIVersion, list.Kind = api.APIVersion, api.KindMqttCluster+"List"
	list.ResourceVersion = strconv.FormatUint(index, 10)
	writeJSON(w, http.StatusOK, list)
}

// lookup reads the cluster named in the path, answering 404 (or 500 for an
// undecodable object) itself when it cannot.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (*api.MqttCluster, bool) {
	name := r.PathValue("name")
	c, err := s.objects.Cluster(name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		notFound(w, name)
		return nil, false
	case err != nil:
		writeStatus(w, http.StatusInternalServerError, ReasonInternal, err.Error(), nil)
		return nil, false
	}
	return c, true
}

// GitSyncStatus is what the operator's git sync last did (GET /v1/gitsync).
type GitSyncStatus = api.GitSyncStatus

// gitSync answers the git sync's status (404 when the operator runs none).
func (s *Server) gitSync(w http.ResponseWriter, r *http.Request) {
	st, ran := s.objects.GitSyncStatus()
	if !ran && s.gitSyncTrigger == nil {
		writeStatus(w, http.StatusNotFound, ReasonNotFound, "this operator runs no git sync (--git-repo)", nil)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// gitSyncWebhook asks the leader's git sync to run now.
func (s *Server) gitSyncWebhook(w http.ResponseWriter, r *http.Request) {
	if s.gitSyncTrigger == nil {
		writeStatus(w, http.StatusNotFound, ReasonNotFound, "this operator runs no git sync (--git-repo)", nil)
		return
	}
	s.gitSyncTrigger()
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "sync requested"})
}

// events answers a cluster's recent events, oldest first.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	c, ok := s.lookup(w, r)
	if !ok {
		return
	}
	list, err := s.objects.Events(c.Name)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, ReasonInternal, err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	if c, ok := s.lookup(w, r); ok {
		writeJSON(w, http.StatusOK, c)
	}
}

// readBody reads at most MaxBodyBytes; it answers 413 past that.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeStatus(w, http.StatusRequestEntityTooLarge, ReasonTooLarge, "request body is larger than 1 MiB", nil)
			return nil, false
		}
		writeStatus(w, http.StatusBadRequest, ReasonBadRequest, "read request body: "+err.Error(), nil)
		return nil, false
	}
	return body, true
}

// ApplyResponse is the answer to an apply: what it did, and the object.
type ApplyResponse = api.ApplyResponse

func expectVersion(rv string) (*uint64, *api.FieldError) {
	if rv == "" {
		return nil, nil
	}
	v, err := strconv.ParseUint(rv, 10, 64)
	if err != nil || v == 0 {
		return nil, &api.FieldError{Field: "metadata.resourceVersion", Reason: api.ReasonInvalid, Message: strconv.Quote(rv) + " is not a resourceVersion"}
	}
	return &v, nil
}

// apply creates or updates an object: the body is admitted (decoded
// strictly, defaulted, validated) exactly as `mqttctl validate` does.
func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	obj, errs := api.DecodeOne(body)
	if obj == nil {
		writeStatus(w, http.StatusBadRequest, ReasonBadRequest, "malformed body: "+errs.Error(), &StatusDetails{Kind: api.Resource, Causes: errs})
		return
	}
	if name := r.PathValue("name"); name != "" && obj.Name != name {
		writeStatus(w, http.StatusBadRequest, ReasonBadRequest, "metadata.name "+strconv.Quote(obj.Name)+" does not match the URL's "+strconv.Quote(name), &StatusDetails{Name: name, Kind: api.Resource})
		return
	}
	if err := api.Admit(obj, s.defaults, errs); err != nil {
		inv := err.(*api.InvalidError)
		writeStatus(w, http.StatusUnprocessableEntity, ReasonInvalid, inv.Error(), &StatusDetails{Name: obj.Name, Kind: api.Resource, Causes: inv.Errors})
		return
	}
	expect, fe := expectVersion(obj.ResourceVersion)
	if fe != nil {
		writeStatus(w, http.StatusUnprocessableEntity, ReasonInvalid, fe.Error(), &StatusDetails{Name: obj.Name, Kind: api.Resource, Causes: []api.FieldError{*fe}})
		return
	}
	if r.URL.Query().Get("dryRun") == "All" {
		s.dryRun(w, obj)
		return
	}
	res, out, err := s.objects.Apply(obj, expect)
	if err != nil {
		s.writeStoreError(w, obj.Name, err)
		return
	}
	code := http.StatusOK
	if res == store.Created {
		code = http.StatusCreated
	}
	if res != store.Unchanged {
		s.log.Info("applied", "kind", api.KindMqttCluster, "name", obj.Name, "result", res, "generation", out.Generation)
	}
	writeJSON(w, code, &ApplyResponse{Result: res, Object: out})
}

// dryRun answers an apply with ?dryRun=All: the object as it would be
// stored (defaulted, with the request annotations kept) and the result,
// storing nothing, and the broker plan. mqttctl diff compares it with the
// stored object.
func (s *Server) dryRun(w http.ResponseWriter, obj *api.MqttCluster) {
	res, out, stored, err := s.objects.Preview(obj)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, ReasonInternal, err.Error(), nil)
		return
	}
	// What applying would do to the brokers: the plan the reconciler
	// follows, computed here so that clients need none of it.
	plan, err := broker.PlanFor(stored, out)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, ReasonInternal, err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, &ApplyResponse{Result: res, Object: out, DryRun: true, Plan: &plan})
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	expect, fe := expectVersion(r.URL.Query().Get("resourceVersion"))
	if fe != nil {
		writeStatus(w, http.StatusBadRequest, ReasonBadRequest, "resourceVersion: "+fe.Message, nil)
		return
	}
	out, err := s.objects.Delete(name, expect)
	if err != nil {
		s.writeStoreError(w, name, err)
		return
	}
	s.log.Info("deleted", "kind", api.KindMqttCluster, "name", name)
	writeJSON(w, http.StatusOK, &ApplyResponse{Result: store.Deleted, Object: out})
}

// putStatus replaces the status subresource; spec and metadata in the body
// are ignored, as Kubernetes does.
func (s *Server) putStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	obj, errs := api.DecodeOne(body)
	if obj == nil || len(errs) > 0 {
		writeStatus(w, http.StatusBadRequest, ReasonBadRequest, "malformed body: "+errs.Error(), &StatusDetails{Name: name, Kind: api.Resource, Causes: errs})
		return
	}
	if obj.Name != name {
		writeStatus(w, http.StatusBadRequest, ReasonBadRequest, "metadata.name "+strconv.Quote(obj.Name)+" does not match the URL's "+strconv.Quote(name), &StatusDetails{Name: name, Kind: api.Resource})
		return
	}
	expect, fe := expectVersion(obj.ResourceVersion)
	if fe != nil {
		writeStatus(w, http.StatusUnprocessableEntity, ReasonInvalid, fe.Error(), &StatusDetails{Name: name, Kind: api.Resource, Causes: []api.FieldError{*fe}})
		return
	}
	out, err := s.objects.PutStatus(name, string(obj.UID), obj.Status, expect)
	var inv *api.InvalidError
	switch {
	case errors.As(err, &inv):
		writeStatus(w, http.StatusUnprocessableEntity, ReasonInvalid, inv.Error(), &StatusDetails{Name: name, Kind: api.Resource, Causes: inv.Errors})
		return
	case err != nil:
		s.writeStoreError(w, name, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
