// Package rollout is the rolling-update gate of a cluster's brokers: one
// broker at a time, drained in HAProxy first (through its runtime API),
// the next only once every broker runs its current spec, nothing before
// an approval with updatePolicy.approval manual. It returns what it did
// as events; the broker reconciler calls it before every update.
package rollout
