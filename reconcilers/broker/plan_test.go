package broker

import (
	"slices"
	"testing"
)

func TestPlanFor(t *testing.T) {
	t.Parallel()
	base := "spec: {replicas: 3, auth: {allowAnonymous: true}}\n"
	cases := []struct {
		name, next         string
		restart, add, drop []string
	}{
		{"unchanged", base, nil, nil, nil},
		{"load balancer only", "spec: {replicas: 3, auth: {allowAnonymous: true}, loadBalancer: {replicas: 3}}\n", nil, nil, nil},
		{"tls only", "spec: {replicas: 3, auth: {allowAnonymous: true}, tls: {dnsNames: [a.example]}}\n", nil, nil, nil},
		{"scale up", "spec: {replicas: 5, auth: {allowAnonymous: true}}\n", nil, []string{"iot-broker-3", "iot-broker-4"}, nil},
		{"scale down", "spec: {replicas: 2, auth: {allowAnonymous: true}}\n", nil, nil, []string{"iot-broker-2"}},
		{"autosave", "spec: {replicas: 3, auth: {allowAnonymous: true}, broker: {persistence: {autosaveInterval: 5s}}}\n", []string{"iot-broker-0", "iot-broker-1", "iot-broker-2"}, nil, nil},
		{"memory", "spec: {replicas: 3, auth: {allowAnonymous: true}, broker: {resources: {memory: 256Mi}}}\n", []string{"iot-broker-0", "iot-broker-1", "iot-broker-2"}, nil, nil},
		{"auth", "spec: {replicas: 3, auth: {allowAnonymous: false}}\n", []string{"iot-broker-0", "iot-broker-1", "iot-broker-2"}, nil, nil},
		{"sync", "spec: {replicas: 3, auth: {allowAnonymous: true}, sync: {enabled: true}}\n", []string{"iot-broker-0", "iot-broker-1", "iot-broker-2"}, nil, nil},
		{"sync delay only", "spec: {replicas: 3, auth: {allowAnonymous: true}, sync: {delay: 5s}}\n", nil, nil, nil},
	}
	cur := cluster(t, base)
	for _, c := range cases {
		p, err := PlanFor(cur, cluster(t, c.next))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.Restart, c.restart) || !slices.Equal(p.Add, c.add) || !slices.Equal(p.Remove, c.drop) {
			t.Errorf("%s: %+v, want restart %v add %v remove %v", c.name, p, c.restart, c.add, c.drop)
		}
	}
	if p, _ := PlanFor(nil, cur); len(p.Add) != 3 || p.Changes() == false {
		t.Fatalf("new cluster: %+v", p)
	}
}
