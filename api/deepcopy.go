package api

import "encoding/json"

// DeepCopy returns an independent copy of the object. It goes through JSON,
// which every field of the type round-trips exactly (a test checks it).
func (in *MqttCluster) DeepCopy() *MqttCluster {
	if in == nil {
		return nil
	}
	b, err := json.Marshal(in)
	if err != nil {
		panic("api: marshal MqttCluster: " + err.Error())
	}
	out := &MqttCluster{}
	if err := json.Unmarshal(b, out); err != nil {
		panic("api: unmarshal MqttCluster: " + err.Error())
	}
	return out
}
