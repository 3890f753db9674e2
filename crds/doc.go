// Package crds holds the MqttCluster CustomResourceDefinition generated from
// the Go types in package api by `make generate` (controller-gen). Nothing
// here is edited by hand; a test fails when the files are stale.
package crds

import "embed"

// FS holds the generated CRD files.
//
//go:embed *.yaml
var FS embed.FS
