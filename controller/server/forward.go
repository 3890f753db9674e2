package server

import (
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// ForwardedHeader marks a request a follower forwarded to the leader: the
// leader serves it itself (never forwards it again).
const ForwardedHeader = "X-Mqtt-Forwarded-By"

// Headers on every object read, as Consul does: how fresh the local state
// is. Index is the raft index the state reflects, KnownLeader whether this
// server knows a leader, LastContact the milliseconds since it heard from
// it (0 on the leader).
const (
	IndexHeader       = "X-Mqtt-Index"
	KnownLeaderHeader = "X-Mqtt-Known-Leader"
	LastContactHeader = "X-Mqtt-Last-Contact"
)

// LeaderAPI tells a follower where the leader's API is: its base URL and
// the transport that reaches it (one that verifies the leader's identity),
// or false when no leader is known.
type LeaderAPI func() (*url.URL, http.RoundTripper, bool)

// toLeader serves a write here on the leader, and forwards it to the
// leader anywhere else, so any manager's API takes writes.
func (s *Server) toLeader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.forward == nil || r.Header.Get(ForwardedHeader) != "" || s.store.Leader().IsLeader {
			h(w, r)
			return
		}
		s.proxy(w, r)
	}
}

// read serves reads from local state, with the index headers; with
// ?consistent=true it answers only after the leader has confirmed its
// leadership and applied every committed write (a follower forwards it).
func (s *Server) read(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c := r.URL.Query().Get("consistent"); c == "true" || c == "1" {
			li := s.store.Leader()
			if !li.IsLeader && s.forward != nil && r.Header.Get(ForwardedHeader) == "" {
				s.proxy(w, r)
				return
			}
			if !li.IsLeader {
				writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, "a consistent read needs the raft leader, and this server does not lead", nil)
				return
			}
			if err := s.store.Barrier(5 * time.Second); err != nil {
				writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, "consistent read: "+err.Error(), nil)
				return
			}
		}
		li := s.store.Leader()
		w.Header().Set(IndexHeader, strconv.FormatUint(li.AppliedIndex, 10))
		w.Header().Set(KnownLeaderHeader, strconv.FormatBool(li.LeaderID != ""))
		lc := int64(0)
		if !li.IsLeader && !li.LastContact.IsZero() {
			lc = time.Since(li.LastContact).Milliseconds()
		}
		w.Header().Set(LastContactHeader, strconv.FormatInt(lc, 10))
		h(w, r)
	}
}

func (s *Server) proxy(w http.ResponseWriter, r *http.Request) {
	target, transport, ok := s.forward()
	if !ok {
		writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, "no raft leader is known: retry in a moment", nil)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			pr.Out.Header.Set(ForwardedHeader, s.store.Leader().NodeID)
		},
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			msg := "forwarding to the raft leader failed: retry"
			var ue *url.Error
			if errors.As(err, &ue) {
				msg += " (" + ue.Op + " " + target.Host + ")"
			}
			writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, msg, nil)
		},
	}
	rp.ServeHTTP(w, r)
}

// backup streams a snapshot of every object, taken on the leader after a
// barrier, so it holds every acknowledged write.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	if !s.store.Leader().IsLeader {
		writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, "a backup is taken on the raft leader, and this server does not lead", nil)
		return
	}
	if err := s.store.Barrier(5 * time.Second); err != nil {
		writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, "backup: "+err.Error(), nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="mqtt-operator-backup.json"`)
	if err := s.store.Backup(w); err != nil {
		s.log.Error("backup failed", "err", err)
	}
}
