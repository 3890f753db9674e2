// Package scaling decides a cluster's broker count from its live load
// (spec.scaling.mode Auto): a pure function of the spec, the stored
// status.scaling and the figures read this pass, so that a new leader
// takes up where the last one stood.
package scaling
