package cluster

import (
	"context"
	"strconv"
	"testing"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// The next scale-down of an Auto cluster waits while a broker past the
// count is still being removed (with spec.sync it is stopped and synced
// over several passes).
func TestRemovingWaitsForABrokerPastTheCount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := swarm.NewFake()
	for i := 0; i < 3; i++ {
		l := swarm.OwnedComponent("op", "iot", broker.ComponentSvc)
		l[broker.LabelIndex] = strconv.Itoa(i)
		if _, err := f.CreateService(ctx, dswarm.ServiceSpec{Annotations: dswarm.Annotations{Name: api.BrokerService("iot", i), Labels: l}}); err != nil {
			t.Fatal(err)
		}
	}
	r := &Reconciler{Swarm: f, OperatorID: "op"}
	c := &api.MqttCluster{}
	c.Name = "iot"
	c.Spec.Scaling = api.ScalingSpec{Mode: api.ScalingAuto, Min: api.Ptr(int32(1)), Max: api.Ptr(int32(3))}
	c.Status.Scaling = &api.ScalingStatus{Replicas: 2}
	if !r.removing(ctx, c) {
		t.Fatal("broker 2 still exists past a count of 2: not seen as being removed")
	}
	c.Status.Scaling.Replicas = 3
	if r.removing(ctx, c) {
		t.Fatal("three brokers at a count of 3 seen as a removal")
	}
}
