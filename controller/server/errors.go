package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

// Status is the error body (api.Status), shaped like Kubernetes'
// metav1.Status.
type Status = api.Status

// StatusDetails names the object and the field causes.
type StatusDetails = api.StatusDetails

// Reasons, as Kubernetes spells them.
const (
	ReasonBadRequest   = "BadRequest"
	ReasonInvalid      = "Invalid"
	ReasonNotFound     = "NotFound"
	ReasonConflict     = "Conflict"
	ReasonUnauthorized = "Unauthorized"
	ReasonForbidden    = "Forbidden"
	ReasonTooLarge     = "RequestEntityTooLarge"
	ReasonUnavailable  = "ServiceUnavailable"
	ReasonInternal     = "InternalError"
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string, details *StatusDetails) {
	writeJSON(w, code, &Status{APIVersion: "v1", Kind: "Status", Status: "Failure", Message: msg, Reason: reason, Code: code, Details: details})
}

// notFound answers 404 for a cluster that does not exist.
func notFound(w http.ResponseWriter, name string) {
	writeStatus(w, http.StatusNotFound, ReasonNotFound, api.Resource+" \""+name+"\" not found", &StatusDetails{Name: name, Kind: api.Resource})
}

// writeStoreError maps store errors to HTTP.
func (s *Server) writeStoreError(w http.ResponseWriter, name string, err error) {
	d := &StatusDetails{Name: name, Kind: api.Resource}
	switch {
	case errors.Is(err, store.ErrConflict):
		writeStatus(w, http.StatusConflict, ReasonConflict, err.Error()+": get the object again and retry", d)
	case errors.Is(err, store.ErrNotFound):
		notFound(w, name)
	case errors.Is(err, store.ErrNotLeader):
		if l := s.store.Leader(); l.LeaderID != "" {
			w.Header().Set("X-Raft-Leader", l.LeaderID)
		}
		writeStatus(w, http.StatusServiceUnavailable, ReasonUnavailable, "this operator is not the raft leader; retry against the leader", d)
	default:
		s.log.Error("store write failed", "name", name, "err", err)
		writeStatus(w, http.StatusInternalServerError, ReasonInternal, "store write failed: "+err.Error(), d)
	}
}
