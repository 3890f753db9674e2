// Package signer is the signer, an in-container program (the operator
// binary's sign command, run as a one-shot Swarm job by the cluster
// reconciler when a cluster's server certificate comes from a
// user-supplied issuer): it signs one certificate request with the issuer
// key mounted as a Docker secret and prints the certificate between
// credentials.SignedBegin and credentials.SignedEnd on its output, which
// the operator reads from the job's log. The issuer key never leaves the
// job's container.
package signer
