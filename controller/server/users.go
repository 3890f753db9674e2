package server

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// UserApplyResponse is the answer to a user apply or delete.
type UserApplyResponse = api.UserApplyResponse

func (s *Server) userRoutes(authed func(pattern, route string, h http.HandlerFunc), read, write func(http.HandlerFunc) http.HandlerFunc) {
	p := api.UserBasePath
	authed("GET "+p, "user-list", read(s.listUsers))
	authed("POST "+p, "user-apply", write(s.applyUser))
	authed("GET "+p+"/{name}", "user-get", read(s.getUser))
	authed("PUT "+p+"/{name}", "user-apply", write(s.applyUser))
	authed("DELETE "+p+"/{name}", "user-delete", s.toLeader(s.deleteUser))
	authed("GET "+p+"/{name}/credentials", "user-credentials", read(s.userCredentials))
	authed("POST "+p+"/{name}/password/rotate", "user-rotate", write(s.rotatePassword))
}

func userNotFound(w http.ResponseWriter, name string) {
	writeStatus(w, http.StatusNotFound, ReasonNotFound, api.UserResource+" \""+name+"\" not found", &StatusDetails{Name: name, Kind: api.UserResource})
}

func (s *Server) lookupUser(w http.ResponseWriter, r *http.Request) (*api.MqttUser, bool) {
	name := r.PathValue("name")
	u, err := s.objects.User(name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		userNotFound(w, name)
		return nil, false
	case err != nil:
		writeStatus(w, http.StatusInternalServerError, ReasonInternal, err.Error(), nil)
		return nil, false
	}
	return u, true
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	sel, ok := selector(w, r)
	if !ok {
		return
	}
	items, index, err := s.objects.Users(sel)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, ReasonInternal, err.Error(), nil)
		return
	}
	list := &api.MqttUserList{Items: items}
	list.APIVersion, list.Kind = api.APIVersion, api.KindMqttUser+"List"
	list.ResourceVersion = strconv.FormatUint(index, 10)
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	if u, ok := s.lookupUser(w, r); ok {
		writeJSON(w, http.StatusOK, u)
	}
}

// applyUser admits a user exactly as `mqttctl validate` does, and refuses
// one whose cluster does not exist (422, spec.cluster).
func (s *Server) applyUser(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	obj, errs := api.DecodeUser(body)
	if obj == nil {
		writeStatus(w, http.StatusBadRequest, ReasonBadRequest, "malformed body: "+errs.Error(), &StatusDetails{Kind: api.UserResource, Causes: errs})
		return
	}
	if name := r.PathValue("name"); name != "" && obj.Name != name {
		writeStatus(w, http.StatusBadRequest, ReasonBadRequest, "metadata.name "+strconv.Quote(obj.Name)+" does not match the URL's "+strconv.Quote(name), &StatusDetails{Name: name, Kind: api.UserResource})
		return
	}
	err := api.AdmitUser(obj, errs)
	if err == nil {
		if _, cerr := s.objects.Cluster(obj.Spec.Cluster); errors.Is(cerr, store.ErrNotFound) {
			err = &api.InvalidError{Name: obj.Name, Kind: api.KindMqttUser, Errors: api.ErrorList{{Field: "spec.cluster", Reason: api.ReasonInvalid,
				Message: "MqttCluster " + strconv.Quote(obj.Spec.Cluster) + " not found: apply the cluster first"}}}
		}
	}
	if err != nil {
		inv := err.(*api.InvalidError)
		writeStatus(w, http.StatusUnprocessableEntity, ReasonInvalid, inv.Error(), &StatusDetails{Name: obj.Name, Kind: api.UserResource, Causes: inv.Errors})
		return
	}
	expect, fe := expectVersion(obj.ResourceVersion)
	if fe != nil {
		writeStatus(w, http.StatusUnprocessableEntity, ReasonInvalid, fe.Error(), &StatusDetails{Name: obj.Name, Kind: api.UserResource, Causes: []api.FieldError{*fe}})
		return
	}
	res, out, err := s.objects.ApplyUser(obj, expect)
	if err != nil {
		s.writeStoreError(w, obj.Name, err)
		return
	}
	code := http.StatusOK
	if res == store.Created {
		code = http.StatusCreated
	}
	if res != store.Unchanged {
		s.log.Info("applied", "kind", api.KindMqttUser, "name", obj.Name, "cluster", obj.Spec.Cluster, "result", res)
	}
	writeJSON(w, code, &UserApplyResponse{Result: res, Object: out})
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	expect, fe := expectVersion(r.URL.Query().Get("resourceVersion"))
	if fe != nil {
		writeStatus(w, http.StatusBadRequest, ReasonBadRequest, "resourceVersion: "+fe.Message, nil)
		return
	}
	out, err := s.objects.DeleteUser(name, expect)
	if errors.Is(err, store.ErrNotFound) {
		userNotFound(w, name)
		return
	}
	if err != nil {
		s.writeStoreError(w, name, err)
		return
	}
	s.log.Info("deleted", "kind", api.KindMqttUser, "name", name)
	writeJSON(w, http.StatusOK, &UserApplyResponse{Result: store.Deleted, Object: out})
}

// userCredentials answers a user's generated password (404 until the
// leader made it).
func (s *Server) userCredentials(w http.ResponseWriter, r *http.Request) {
	u, ok := s.lookupUser(w, r)
	if !ok {
		return
	}
	m, err := s.objects.Credentials(u.Spec.Cluster)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, ReasonInternal, "the credentials of "+api.UserResource+" \""+u.Name+"\": "+err.Error(), nil)
		return
	}
	var sec credentials.UserSecret
	found := false
	if m != nil {
		sec, found = m.Users[u.Name]
	}
	if !found {
		writeStatus(w, http.StatusNotFound, ReasonNotFound, "the password of "+api.UserResource+" \""+u.Name+"\" is not made yet: the operator makes it on its next reconcile of cluster "+u.Spec.Cluster, &StatusDetails{Name: u.Name, Kind: api.UserResource})
		return
	}
	writeJSON(w, http.StatusOK, Credentials{Username: u.Name, Password: sec.Password})
}

// rotatePassword asks for a new password (an annotation with the request
// time; the leader makes the password and pushes its hash, and the user's
// live connections are closed).
func (s *Server) rotatePassword(w http.ResponseWriter, r *http.Request) {
	u, ok := s.lookupUser(w, r)
	if !ok {
		return
	}
	at := time.Now().UTC().Format(time.RFC3339Nano)
	if err := s.objects.AnnotateUser(u.Name, api.RotatePasswordAnnotation, at); err != nil {
		s.writeStoreError(w, u.Name, err)
		return
	}
	s.log.Info("password rotation requested", "user", u.Name)
	writeJSON(w, http.StatusOK, RenewResponse{Name: u.Name, RequestedAt: at})
}
