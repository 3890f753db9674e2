// Package e2e holds end-to-end tests against the real operator stack on a
// real Docker Swarm. They run with the e2e build tag, from hack/e2e.sh
// (called by `make test`), after hack/up.sh has deployed the stack.
package e2e
