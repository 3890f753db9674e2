// Package credentials decides a cluster's generated secret material: the
// cluster CA, the server certificate HAProxy serves on MQTTS, and the
// generated MQTT user with its password and Mosquitto password-file line.
//
// The material lives in the raft store (an internal kind the API never
// serves whole) and in Docker secrets; this package only computes the next
// material from the current one, the spec and the time. It does no I/O and
// never puts a private key or password in an error.
package credentials
