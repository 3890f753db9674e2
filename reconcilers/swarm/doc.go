// Package swarm is the operator's one narrow door to Docker Swarm: the
// Reader and Writer interfaces the reconcilers take (each takes only what it
// calls), their Docker implementation, the ownership labels and names of
// everything the operator creates, and a recording fake for unit tests.
//
// Only this package imports github.com/docker/docker/client, so a move to
// github.com/moby/moby/client is a change here alone. Objects are always
// found by the ownership label, never by name alone; objects without it are
// never touched.
package swarm
