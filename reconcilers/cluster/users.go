package cluster

import (
	"fmt"
	"maps"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/status"
)

// ensureUsers gives every MqttUser of the cluster a generated password
// (a new one when a rotation was asked after the current one was made),
// drops the passwords of users gone, and stores the material when that
// changed anything. It returns the users.
func (p *pass) ensureUsers() ([]api.MqttUser, error) {
	if p.r.Users == nil {
		return nil, nil
	}
	users, err := p.r.Users.UsersOf(p.c.Name)
	if err != nil {
		return nil, err
	}
	next := maps.Clone(p.m.Users)
	if next == nil {
		next = map[string]credentials.UserSecret{}
	}
	keep := map[string]bool{}
	changed := false
	for _, u := range users {
		keep[u.Name] = true
		cur, ok := next[u.Name]
		asked, _ := time.Parse(time.RFC3339Nano, u.Annotations[api.RotatePasswordAnnotation])
		if ok && !cur.IssuedAt.Before(asked) {
			continue
		}
		sec, err := credentials.NewUserSecret(u.Name, p.r.now())
		if err != nil {
			return nil, err
		}
		next[u.Name] = sec
		changed = true
		if ok {
			p.r.event(p.c.Name, api.EventNormal, "PasswordRotated", "a new password for user %s", u.Name)
		}
	}
	for name := range next {
		if !keep[name] {
			delete(next, name)
			changed = true
		}
	}
	if !changed {
		return users, nil
	}
	m := p.m
	m.Users = next
	if len(next) == 0 {
		m.Users = nil
	}
	if err := p.r.saveMaterial(p.c, m); err != nil {
		return nil, err
	}
	p.m = m
	return users, nil
}

// userStatuses: a user is Ready when every broker serves the state that
// holds it (a disabled user is served by none: Ready False, Disabled).
func userStatuses(users []api.MqttUser, secrets map[string]credentials.UserSecret, a *status.AuthView, now time.Time) map[string]api.MqttUserStatus {
	if users == nil || a == nil {
		return nil
	}
	out := map[string]api.MqttUserStatus{}
	for _, u := range users {
		st := u.Status
		st.Conditions = append([]metav1.Condition(nil), st.Conditions...)
		st.ObservedGeneration = u.Generation
		st.Brokers = fmt.Sprintf("served by %d/%d brokers", len(a.Applied), a.Want())
		st.PasswordIssuedAt = nil
		if sec, ok := secrets[u.Name]; ok {
			t := metav1.NewTime(sec.IssuedAt.Truncate(time.Second))
			st.PasswordIssuedAt = &t
		}
		cond := metav1.Condition{Type: api.ConditionReady, ObservedGeneration: u.Generation, LastTransitionTime: metav1.NewTime(now.Truncate(time.Second))}
		switch {
		case u.Spec.Disabled:
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Disabled", "spec.disabled: the user cannot log in"
			st.Brokers = ""
		case !a.Enforced:
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "NotEnforced", "the operator cannot push users to the brokers (no control network or control-plane TLS)"
		case len(a.Applied) >= a.Want():
			cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, "Applied", "served by every broker"
		default:
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Applying", st.Brokers
		}
		meta.SetStatusCondition(&st.Conditions, cond)
		out[u.Name] = st
	}
	return out
}

// AuthDrift records that a broker was found serving users and rules the
// operator did not push (the pusher put its own back): a Warning event.
func (r *Reconciler) AuthDrift(cluster string, broker int, found string) {
	r.event(cluster, api.EventWarning, "AuthDrift", "%s served users and rules %q that the operator did not push: put back", api.BrokerService(cluster, broker), found)
}
