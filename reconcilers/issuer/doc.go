// Package issuer gets a cluster's server certificate signed by the user's
// issuer (spec.tls.issuerSecret) without the operator ever reading its
// key: it keeps a key and a certificate request in the material, runs a
// one-shot Swarm job (the operator's image, `mqtt-operator sign`, see
// programs/signer) with the issuer secret mounted, and reads the signed
// certificate (public) from the job's log. It returns the material; the
// caller's Save stores it.
package issuer
