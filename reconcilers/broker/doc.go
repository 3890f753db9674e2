// Package broker renders each Mosquitto broker's configuration from the
// cluster spec: the listener on the overlay network, persistence with
// spec.broker.persistence.autosaveInterval, and authentication from
// spec.auth. Rendering is a pure function; the bridge topology (step 3) is
// added here as part of the same configuration.
package broker
