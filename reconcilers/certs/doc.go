// Package certs issues the cluster's CA and server certificates with
// crypto/x509 and decides when to reissue them: renewal time is a pure
// function of the certificate's validity and renewBefore, and the reissue
// decision is an ordered chain of small policy checks, each giving a reason
// (as cert-manager does).
//
// It does no I/O and reads no clock: callers pass the time. Private keys are
// returned as PEM for the caller to store in Docker secrets and the raft
// store; no error or reason string ever contains key material.
package certs
