package server

import (
	"encoding/json"
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

// ToAPI turns a stored object into the MqttCluster users see.
func ToAPI(o *store.Object) (*api.MqttCluster, error) {
	out := &api.MqttCluster{}
	out.APIVersion = api.APIVersion
	out.Kind = api.KindMqttCluster
	if len(o.Spec) > 0 {
		if err := json.Unmarshal(o.Spec, &out.Spec); err != nil {
			return nil, fmt.Errorf("decode stored spec of %q: %w", o.Name, err)
		}
	}
	if len(o.Status) > 0 {
		if err := json.Unmarshal(o.Status, &out.Status); err != nil {
			return nil, fmt.Errorf("decode stored status of %q: %w", o.Name, err)
		}
	}
	out.Name = o.Name
	out.UID = types.UID(o.UID)
	out.Generation = o.Generation
	out.ResourceVersion = strconv.FormatUint(o.ModifyIndex, 10)
	out.CreationTimestamp = metav1.NewTime(o.Created)
	out.Labels = o.Labels
	out.Annotations = o.Annotations
	return out, nil
}
