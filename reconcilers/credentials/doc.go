// Package credentials decides a cluster's generated secret material: the
// cluster CA, the server certificate HAProxy serves on MQTTS, and the
// generated MQTT user with its password and Mosquitto password-file line.
//
// The material lives in the raft store (an internal kind the API never
// serves whole, sealed with the operator's key: seal.go) and in Docker
// secrets; this package computes the next material from the current one,
// the spec and the time, and seals and unseals it. Its one I/O is reading
// the sealing key's file (LoadKeyFile, at the operator's start). It never puts
// a private key or password in an error.
package credentials
