package signer

import (
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// Run is the sign command: args are its flags; the certificate goes to
// out.
func Run(args []string, out io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("mqtt-operator sign", flag.ExitOnError)
	issuer := fs.String("issuer", "/run/secrets/issuer.pem", "the issuer's certificate and key (PEM)")
	csr := fs.String("csr", "", "the certificate request, DER in base64")
	duration := fs.Duration("duration", 90*24*time.Hour, "the certificate's lifetime")
	_ = fs.Parse(args)
	bundle, err := os.ReadFile(*issuer)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	der, err := base64.StdEncoding.DecodeString(*csr)
	if err != nil {
		return fmt.Errorf("sign: --csr: %w", err)
	}
	cert, err := certs.SignCSR(bundle, der, *duration, now)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	_, err = fmt.Fprintf(out, "%s\n%s%s\n", credentials.SignedBegin, cert, credentials.SignedEnd)
	return err
}
