// Package api holds the MqttCluster API: its Go types (the CRD schema in
// crds/ is generated from them), strict decoding of YAML and JSON, defaults
// and validation.
//
// It owns the rules for what a valid object is, so the CLI, the HTTP API and
// the CRD schema share one definition. It must not do I/O: no files, no
// network, no clock reads outside what callers pass in.
//
// +groupName=mqtt.swarm
// +versionName=v1alpha1
// +kubebuilder:object:generate=false
package api
