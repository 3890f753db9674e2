package broker

import (
	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Plan is what applying a spec does to the brokers (a wire type: the API
// answers it on a dry run).
type Plan = api.BrokerPlan

// PlanFor compares the brokers of cur (nil: a new cluster) and next, two
// defaulted, valid clusters, as the reconciler would make them: a broker
// restarts when its service spec (configuration, image, resources,
// placement, mounts, command) changes. Secrets count by the spec fields
// that name them, not by content.
func PlanFor(cur, next *api.MqttCluster) (Plan, error) {
	var p Plan
	n := api.Brokers(next)
	if cur == nil {
		for i := 0; i < n; i++ {
			p.Add = append(p.Add, api.BrokerService(next.Name, i))
		}
		return p, nil
	}
	m := api.Brokers(cur)
	for i := 0; i < max(n, m); i++ {
		name := api.BrokerService(next.Name, i)
		switch {
		case i >= m:
			p.Add = append(p.Add, name)
		case i >= n:
			p.Remove = append(p.Remove, name)
		default:
			a, err := specHash(cur, i)
			if err != nil {
				return p, err
			}
			b, err := specHash(next, i)
			if err != nil {
				return p, err
			}
			if a != b {
				p.Restart = append(p.Restart, name)
			}
		}
	}
	return p, nil
}

// specHash is broker i's service spec hash with stand-in secrets.
func specHash(c *api.MqttCluster, i int) (string, error) {
	conf, err := Render(c, i, Options{})
	if err != nil {
		return "", err
	}
	stand := func(name string) *dswarm.Secret {
		return &dswarm.Secret{ID: name, Spec: dswarm.SecretSpec{Annotations: dswarm.Annotations{Name: name}}}
	}
	var pass *dswarm.Secret
	switch {
	case c.Spec.Auth.PasswordFileSecret != "":
		pass = stand("user:" + c.Spec.Auth.PasswordFileSecret)
	case !*c.Spec.Auth.AllowAnonymous:
		pass = stand("generated")
	}
	in := Inputs{Internal: stand("internal"), Bridges: map[int]*dswarm.Secret{i: stand("bridge")}}
	r := &Reconciler{OperatorID: "plan", Network: api.NetworkName}
	confName := api.Versioned(api.BrokerService(c.Name, i), swarm.ContentHash(conf))
	spec, err := r.serviceSpec(c, i, confName, confName, pass, in)
	if err != nil {
		return "", err
	}
	return spec.Labels[swarm.LabelSpecHash], nil
}
