// Package tlsutil holds the one TLS configuration of the whole program
// (Mozilla "intermediate": TLS 1.2 with ECDHE and AEAD suites only, or
// TLS 1.3), the control-plane CA, and the operators' own certificates.
//
// The control-plane CA is created at install (make up, or `mqtt-operator
// control-ca`) and kept in a Docker secret that only the operator service
// mounts. Each operator issues itself a short-lived certificate from it at
// start, in memory (its key never touches a disk or a network), naming its
// raft server id in a URI SAN, and renews it before it expires. The same
// identity serves raft (mutual TLS), the HTTP API (HTTPS) and a follower's
// forwarding to the leader (which checks the leader's id).
//
// It does no network I/O beyond wrapping connections it is given, and
// never logs or returns a private key.
package tlsutil
