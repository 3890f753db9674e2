// Package programs holds the in-container programs, each run from the
// operator's image by a command of cmd/mqtt-operator inside a container the
// reconcilers start: syncagent (the per-node sync agent), exporter (the
// broker exporter) and signer (the one-shot certificate signer job). They
// talk to the operator only over the control network, with certificates
// from the control-plane CA.
package programs
