// Package secrets keeps the Docker secrets the operator makes for a
// cluster. Swarm secrets are immutable, so a content is a versioned object
// named <cluster>-<component>-<hash of the content>; a new content is a new
// secret, services are pointed at it, and versions no service references
// any more are pruned. It never logs, returns or labels a secret's data.
package secrets
