// Package rollout decides which brokers HAProxy sends new clients to,
// through its runtime API. The rolling-update gate of a cluster's brokers:
// one broker at a time, drained in HAProxy first, the next only once every
// broker runs its current spec, nothing before an approval with
// updatePolicy.approval manual; it returns what it did as events, and the
// broker reconciler calls it before every update. Admission: each pass,
// a broker is ready in HAProxy only while it runs its current spec, is
// stable and has joined the bridge tree (Admit); a broker the operator
// found gone is drained at once (Lost).
package rollout
