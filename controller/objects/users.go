package objects

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

// KindUser is the MqttUser records' kind.
const KindUser = api.KindMqttUser

// ToUser turns a stored record into the MqttUser users see.
func ToUser(o *store.Object) (*api.MqttUser, error) {
	o, err := current(o)
	if err != nil {
		return nil, err
	}
	out := &api.MqttUser{}
	out.APIVersion, out.Kind = api.APIVersion, api.KindMqttUser
	if err := json.Unmarshal(o.Spec, &out.Spec); err != nil {
		return nil, fmt.Errorf("decode stored spec of user %q: %w", o.Name, err)
	}
	if len(o.Status) > 0 {
		if err := json.Unmarshal(o.Status, &out.Status); err != nil {
			return nil, fmt.Errorf("decode stored status of user %q: %w", o.Name, err)
		}
	}
	out.Name, out.UID, out.Generation = o.Name, types.UID(o.UID), o.Generation
	out.ResourceVersion = strconv.FormatUint(o.ModifyIndex, 10)
	out.CreationTimestamp = metav1.NewTime(o.Created)
	out.Labels, out.Annotations = o.Labels, o.Annotations
	return out, nil
}

func userNotFound(name string) error {
	return fmt.Errorf("%w: %s %q", store.ErrNotFound, api.KindMqttUser, name)
}

// User is the stored user name.
func (x *Objects) User(name string) (*api.MqttUser, error) {
	o := x.Store.Get(KindUser, name)
	if o == nil {
		return nil, userNotFound(name)
	}
	return ToUser(o)
}

// Users are the stored users sel matches (nil: all), and the store's index.
func (x *Objects) Users(sel labels.Selector) ([]api.MqttUser, uint64, error) {
	objs, index := x.Store.List(KindUser)
	out := []api.MqttUser{}
	for _, o := range objs {
		if sel != nil && !sel.Matches(labels.Set(o.Labels)) {
			continue
		}
		u, err := ToUser(o)
		if err != nil {
			return nil, index, err
		}
		out = append(out, *u)
	}
	return out, index, nil
}

// UsersOf are the users of one cluster (a user that does not decode is
// skipped: it cannot be served).
func (x *Objects) UsersOf(cluster string) ([]api.MqttUser, error) {
	objs, _ := x.Store.List(KindUser)
	var out []api.MqttUser
	for _, o := range objs {
		u, err := ToUser(o)
		if err == nil && u.Spec.Cluster == cluster {
			out = append(out, *u)
		}
	}
	return out, nil
}

// ApplyUser stores an admitted user, keeping a pending password rotation
// request the applied object does not set.
func (x *Objects) ApplyUser(u *api.MqttUser, expect *uint64) (api.ApplyResult, *api.MqttUser, error) {
	spec, err := json.Marshal(u.Spec)
	if err != nil {
		return "", nil, err
	}
	ann := u.Annotations
	if cur := x.Store.Get(KindUser, u.Name); cur != nil {
		if v, ok := cur.Annotations[api.RotatePasswordAnnotation]; ok {
			if _, set := u.Annotations[api.RotatePasswordAnnotation]; !set {
				ann = maps.Clone(ann)
				if ann == nil {
					ann = map[string]string{}
				}
				ann[api.RotatePasswordAnnotation] = v
			}
		}
	}
	res, stored, err := x.apply(store.ApplyRequest{
		Kind: KindUser, Name: u.Name, Labels: u.Labels, Annotations: ann, Spec: spec, ExpectVersion: expect,
	})
	if err != nil {
		return "", nil, err
	}
	out, err := ToUser(stored)
	return res, out, err
}

// AnnotateUser sets one annotation of a stored user (rotate-password),
// retried on a conflict as Annotate is.
func (x *Objects) AnnotateUser(name, key, value string) error {
	return x.annotate(KindUser, name, key, value, userNotFound)
}

// DeleteUser removes a stored user and returns it as it was.
func (x *Objects) DeleteUser(name string, expect *uint64) (*api.MqttUser, error) {
	if x.Store.Get(KindUser, name) == nil {
		return nil, userNotFound(name)
	}
	old, err := x.Store.Delete(store.DeleteRequest{Kind: KindUser, Name: name, ExpectVersion: expect})
	if err != nil {
		return nil, err
	}
	return ToUser(old)
}

// WriteUserStatus stores a user's status when it changed (a user deleted
// in between is left alone).
func (x *Objects) WriteUserStatus(name string, st api.MqttUserStatus) error {
	o := x.Store.Get(KindUser, name)
	if o == nil {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if string(b) == string(o.Status) {
		return nil
	}
	if _, _, err := x.updateStatus(store.StatusRequest{Kind: KindUser, Name: name, Status: b, ExpectUID: o.UID}); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("status of user %s: %w", name, err)
	}
	return nil
}
