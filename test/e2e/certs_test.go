//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
)

// servedSerial is the serial of the certificate a new TLS handshake gets.
func servedSerial(e endpoint) (*big.Int, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", fmt.Sprintf("%s:%d", e.host, e.mqtts), e.tls("localhost"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

func tlsSecrets(t *testing.T, cluster string) string {
	return docker(t, "secret", "ls", "--filter", "label=mqtt.swarm/cluster="+cluster, "--filter", "label=mqtt.swarm/component=tls", "--format", "{{.Name}}")
}

// TestCertificateRenewalDropsNobody: 100 MQTTS clients connected and a
// QoS 1 publish loop running through HAProxy; mqttctl certificate renew;
// the next TLS handshake gets the new certificate within 1 s of the
// request, no client is dropped, no publish fails, HAProxy's task is not
// restarted and no secret is created. Then a restarted HAProxy task (it
// starts from the secret it has) gets the current certificate pushed, and
// a renewal survives the operator being killed right after the request.
func TestCertificateRenewalDropsNobody(t *testing.T) {
	e := quickstart(t)
	c := newClient(t)
	const cluster = "quickstart"
	waitReady(t, c, cluster, 90*time.Second)
	task, secretsBefore := lbTask(t, cluster), tlsSecrets(t, cluster)
	before, err := servedSerial(e)
	if err != nil {
		t.Fatal(err)
	}

	const clients = 100
	conns := make([]*conn, 0, clients)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cn, err := dial(e, fmt.Sprintf("e2e-rot-%03d", i), e.tls("localhost"), e.user, e.pass)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			conns = append(conns, cn)
			mu.Unlock()
		}(i)
		if i%10 == 9 {
			wg.Wait() // ten handshakes at a time: 2 cores
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("connecting: %v", err)
	}
	defer func() {
		for _, cn := range conns {
			cn.Disconnect(0)
		}
	}()
	// Half the clients subscribe; the publish loop runs on the others.
	var received atomic.Int64
	for _, cn := range conns[:clients/2] {
		if tok := cn.Subscribe("e2e/rotation", 1, func(mqtt.Client, mqtt.Message) { received.Add(1) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
	}
	stop := make(chan struct{})
	var published, failed atomic.Int64
	loop := make(chan struct{})
	go func() {
		defer close(loop)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			tok := conns[clients/2+i%(clients/2)].Publish("e2e/rotation", 1, false, fmt.Sprint(i))
			if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
				failed.Add(1)
			} else {
				published.Add(1)
			}
		}
	}()
	eventually(t, "the publish loop running", 10*time.Second, func() error {
		if published.Load() < 10 {
			return errStr("fewer than 10 publishes")
		}
		return nil
	})

	start := time.Now()
	if out, err := exec.Command("../../bin/mqttctl", "certificate", "renew", cluster).CombinedOutput(); err != nil {
		t.Fatalf("mqttctl certificate renew: %v\n%s", err, out)
	}
	var served *big.Int
	for time.Since(start) < 10*time.Second {
		if served, err = servedSerial(e); err == nil && served.Cmp(before) != 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	if served == nil || served.Cmp(before) == 0 {
		t.Fatalf("still serving serial %x after %v (%v)", before, took, err)
	}
	t.Logf("renew request -> new serial served: %v", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("the new certificate was served %v after the request (target 1s)", took)
	}
	// The loop runs on after the rotation, on the same connections.
	atRotation := published.Load() + failed.Load()
	eventually(t, "publishes after the rotation", 10*time.Second, func() error {
		if published.Load()+failed.Load() < atRotation+20 {
			return errStr("fewer than 20 publishes since the rotation")
		}
		return nil
	})
	close(stop)
	<-loop

	dropped := 0
	for _, cn := range conns {
		if cn.lost.Load() > 0 || !cn.IsConnectionOpen() {
			dropped++
		}
	}
	t.Logf("%d clients, %d publishes, %d failed, %d dropped, %d deliveries", clients, published.Load(), failed.Load(), dropped, received.Load())
	if dropped != 0 || failed.Load() != 0 {
		t.Errorf("rotation dropped %d clients and failed %d publishes", dropped, failed.Load())
	}
	// Every publish reached the 50 subscribers (QoS 1: at least once).
	eventually(t, "every delivery", 10*time.Second, func() error {
		if got, want := received.Load(), published.Load()*clients/2; got < want {
			return fmt.Errorf("%d deliveries, want %d", got, want)
		}
		return nil
	})
	if now := lbTask(t, cluster); now != task {
		t.Errorf("the HAProxy task was replaced (%s -> %s)", task, now)
	}
	if now := tlsSecrets(t, cluster); now != secretsBefore {
		t.Errorf("secrets changed by a pushed renewal: %q -> %q", secretsBefore, now)
	}
	obj := waitReady(t, c, cluster, 30*time.Second)
	if cs := obj.Status.Certificate; cs == nil || cs.Serial != served.Text(16) || cs.Reason != "Requested" || cs.Serving != "1/1" {
		t.Errorf("status.certificate: %+v, want serial %x served 1/1", cs, served)
	}

	// A HAProxy task that starts again begins with the secret's (older)
	// certificate: the operator pushes the current one into it.
	current := served
	docker(t, "kill", docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+cluster+"-lb"))
	eventually(t, "a new HAProxy task serving the current certificate", 30*time.Second, func() error {
		if lbTask(t, cluster) == task {
			return errStr("the killed task is still the running one")
		}
		s, err := servedSerial(e)
		if err != nil {
			return err
		}
		if s.Cmp(current) != 0 {
			return fmt.Errorf("serving %x, want %x", s, current)
		}
		return nil
	})

	// The operator killed right after a renewal request: its restart
	// completes the rotation.
	if out, err := exec.Command("../../bin/mqttctl", "certificate", "renew", cluster).CombinedOutput(); err != nil {
		t.Fatalf("mqttctl certificate renew: %v\n%s", err, out)
	}
	docker(t, "kill", docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+stack+"_operator"))
	eventually(t, "the renewal completed by the restarted operator", 90*time.Second, func() error {
		s, err := servedSerial(e)
		if err != nil {
			return err
		}
		if s.Cmp(current) == 0 {
			return errStr("still the certificate from before the request")
		}
		obj, err := c.Get(context.Background(), cluster)
		if err != nil {
			return err
		}
		if cs := obj.Status.Certificate; cs == nil || cs.Serial != s.Text(16) || cs.Serving != "1/1" {
			return fmt.Errorf("status.certificate %+v, served %x", cs, s)
		}
		return nil
	})
}

const certsCluster = "e2ecerts"

// clientCert issues a client certificate (clientAuth usage) from ca.
func clientCert(t *testing.T, ca certs.Pair, cn string) tls.Certificate {
	t.Helper()
	caCert, err := certs.ParseCert(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := tls.X509KeyPair(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func poolOf(t *testing.T, pems ...[]byte) *x509.CertPool {
	p := x509.NewCertPool()
	for _, b := range pems {
		if !p.AppendCertsFromPEM(b) {
			t.Fatal("no certificate in PEM")
		}
	}
	return p
}

// secretFile creates a Docker secret from data; it is removed at the end.
func secretFile(t *testing.T, name string, data []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	exec.Command("docker", "secret", "rm", name).Run()
	docker(t, "secret", "create", name, f)
}

// TestCARotationClientAuthAndUserCertificate, on a cluster of its own:
//   - CA rotation: the next CA is in the bundle at once; a client that
//     trusts only the old CA keeps connecting during the overlap; at the
//     switch the server certificate from the new CA is pushed (HAProxy is
//     not restarted) and clients with the bundle keep connecting;
//   - clientAuth required: a client without a certificate is refused, one
//     with a certificate from the client CA secret gets in;
//   - certificateSecret: the user's certificate is served as is and its
//     expiry reported.
func TestCARotationClientAuthAndUserCertificate(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	t.Cleanup(func() {
		if os.Getenv("E2E_KEEP") != "" {
			return
		}
		_ = c.Delete(ctx, certsCluster)
		eventually(t, "the certs cluster removed", 60*time.Second, func() error {
			if n := docker(t, "service", "ls", "-q", "--filter", "label=mqtt.swarm/cluster="+certsCluster); n != "" {
				return errStr("services left")
			}
			return nil
		})
		exec.Command("docker", "secret", "rm", "e2ecerts-fleet-ca", "e2ecerts-user-cert", "e2ecerts-issuer").Run()
	})
	const overlap = 8 * time.Second
	spec := func(tlsExtra string) []byte {
		return testSpec(certsCluster, 1, 0, 29883, "  tls: {dnsNames: [localhost], caOverlap: "+overlap.String()+tlsExtra+"}\n")
	}
	if _, err := c.Apply(ctx, spec("")); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, certsCluster, 120*time.Second)
	cr, err := c.Credentials(ctx, certsCluster)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := c.CA(ctx, certsCluster)
	if err != nil {
		t.Fatal(err)
	}
	oldCA := []byte(ca.Certificate)
	e := endpoint{host: "localhost", mqtts: 29883, user: cr.Username, pass: cr.Password}
	connects := func(roots *x509.CertPool, cert *tls.Certificate) error {
		tc := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		cn, err := dial(e, fmt.Sprintf("e2e-ca-%d", time.Now().UnixNano()), tc, e.user, e.pass)
		if err != nil {
			return err
		}
		defer cn.Disconnect(0)
		return roundTrip(cn, "e2e/ca", "x")
	}
	if err := connects(poolOf(t, oldCA), nil); err != nil {
		t.Fatal(err)
	}
	task := lbTask(t, certsCluster)
	// The key HAProxy started with (read from inside its container): it
	// must show up nowhere else.
	startKey := docker(t, "exec", docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+certsCluster+"-lb"), "cat", "/run/secrets/mqtts.pem")

	// CA rotation.
	if out, err := exec.Command("../../bin/mqttctl", "certificate", "rotate-ca", certsCluster).CombinedOutput(); err != nil {
		t.Fatalf("mqttctl certificate rotate-ca: %v\n%s", err, out)
	}
	var bundle []byte
	eventually(t, "the next CA in the bundle", 10*time.Second, func() error {
		ca, err := c.CA(ctx, certsCluster)
		if err != nil {
			return err
		}
		if n := strings.Count(ca.Certificate, "BEGIN CERTIFICATE"); n != 2 {
			return fmt.Errorf("%d certificates in the bundle", n)
		}
		bundle = []byte(ca.Certificate)
		return nil
	})
	// The status follows at the end of the pass that stored the next CA.
	var obj *api.MqttCluster
	eventually(t, "status.caRotation", 10*time.Second, func() error {
		var err error
		if obj, err = c.Get(ctx, certsCluster); err != nil {
			return err
		}
		if obj.Status.CARotation == nil || obj.Status.CARotation.SwitchAt == nil {
			return fmt.Errorf("status.caRotation: %+v", obj.Status.CARotation)
		}
		return nil
	})
	switchAt := obj.Status.CARotation.SwitchAt.Time
	if err := connects(poolOf(t, oldCA), nil); err != nil {
		t.Fatalf("during the overlap, a client trusting only the old CA: %v", err)
	}
	if err := connects(poolOf(t, bundle), nil); err != nil {
		t.Fatalf("during the overlap, a client with the bundle: %v", err)
	}
	newOnly := poolOf(t, []byte(strings.Replace(string(bundle), string(oldCA), "", 1)))
	eventually(t, "the new CA signing after the overlap", overlap+20*time.Second, func() error {
		return connects(newOnly, nil)
	})
	if d := time.Since(switchAt); d > 5*time.Second {
		t.Errorf("the new CA signed %v after the switch time", d)
	}
	if err := connects(poolOf(t, bundle), nil); err != nil {
		t.Fatalf("after the switch, a client with the bundle: %v", err)
	}
	if err := connects(poolOf(t, oldCA), nil); err == nil {
		t.Fatal("after the switch, the old CA alone still verifies")
	}
	if now := lbTask(t, certsCluster); now != task {
		t.Errorf("the CA rotation restarted HAProxy (%s -> %s)", task, now)
	}
	obj = waitReady(t, c, certsCluster, 30*time.Second)
	if obj.Status.CARotation != nil || obj.Status.Certificate.Reason != "CARotated" {
		t.Errorf("after the switch: caRotation %+v, certificate %+v", obj.Status.CARotation, obj.Status.Certificate)
	}

	// Mutual TLS: the client CA from a Docker secret.
	clientCA, err := certs.IssueCA("e2e-fleet", certs.ECDSAP256, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	secretFile(t, "e2ecerts-fleet-ca", clientCA.CertPEM)
	if _, err := c.Apply(ctx, spec(", clientAuth: required, clientCASecret: e2ecerts-fleet-ca")); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, certsCluster, 120*time.Second)
	device := clientCert(t, clientCA, "device-1")
	eventually(t, "a client with a certificate connecting", 30*time.Second, func() error { return connects(newOnly, &device) })
	if err := connects(newOnly, nil); err == nil {
		t.Fatal("clientAuth required: a client without a certificate got in")
	}
	stranger, _ := certs.IssueCA("stranger", certs.ECDSAP256, time.Hour, time.Now())
	other := clientCert(t, stranger, "device-2")
	if err := connects(newOnly, &other); err == nil {
		t.Fatal("clientAuth required: a certificate from another CA got in")
	}

	// The user's own certificate, served as is.
	userCA, _ := certs.IssueCA("e2e-user", certs.ECDSAP256, time.Hour, time.Now())
	userCert, err := certs.IssueServer(userCA, certs.ServerRequest{CommonName: "mqtt.example.com", DNSNames: []string{"localhost"}, Duration: 50 * time.Minute}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	secretFile(t, "e2ecerts-user-cert", append(append([]byte{}, userCert.CertPEM...), userCert.KeyPEM...))
	if _, err := c.Apply(ctx, spec(", certificateSecret: e2ecerts-user-cert")); err != nil {
		t.Fatal(err)
	}
	obj = waitReady(t, c, certsCluster, 120*time.Second)
	want, _ := certs.ParseCert(userCert.CertPEM)
	eventually(t, "the user's certificate served", 30*time.Second, func() error { return connects(poolOf(t, userCA.CertPEM), nil) })
	eventually(t, "the user's certificate in the status", 30*time.Second, func() error {
		obj, err := c.Get(ctx, certsCluster)
		if err != nil {
			return err
		}
		cs := obj.Status.Certificate
		if cs == nil || cs.Serial != want.SerialNumber.Text(16) || cs.NotAfter == nil || !cs.NotAfter.Time.Equal(want.NotAfter) {
			return fmt.Errorf("status.certificate %+v, want serial %x notAfter %v", cs, want.SerialNumber, want.NotAfter)
		}
		return nil
	})
	if _, err := c.CA(ctx, certsCluster); err == nil || !strings.Contains(err.Error(), "certificateSecret") {
		t.Errorf("get ca with a user certificate: %v", err)
	}

	// The user's issuer: a signer job signs the operator's request; the
	// issuer's key stays in the Docker secret.
	secretFile(t, "e2ecerts-issuer", append(append([]byte{}, userCA.CertPEM...), userCA.KeyPEM...))
	if _, err := c.Apply(ctx, spec(", issuerSecret: e2ecerts-issuer")); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, certsCluster, 120*time.Second)
	eventually(t, "a certificate from the user's issuer served", 30*time.Second, func() error {
		s, err := servedSerialWith(e, poolOf(t, userCA.CertPEM))
		if err != nil {
			return err
		}
		if s.Cmp(want.SerialNumber) == 0 {
			return errStr("still the user's own certificate")
		}
		return nil
	})
	if ca, err := c.CA(ctx, certsCluster); err != nil || ca.Certificate != string(userCA.CertPEM) {
		t.Errorf("get ca with an issuer: %v", err)
	}
	if jobs := docker(t, "service", "ls", "-q", "--filter", "label=mqtt.swarm/component=signer"); jobs != "" {
		t.Errorf("signer jobs left: %s", jobs)
	}
	// Nor their containers (Swarm leaves those of a removed replicated
	// job behind: moby/moby#44312).
	eventually(t, "no signer container left", 20*time.Second, func() error {
		if ctrs := docker(t, "ps", "-aq", "--filter", "label=mqtt.swarm/component=signer", "--filter", "label=mqtt.swarm/cluster="+certsCluster); ctrs != "" {
			return fmt.Errorf("signer containers left: %s", ctrs)
		}
		return nil
	})
	noKeyLeaks(t, c, []byte(startKey), userCert.KeyPEM, userCA.KeyPEM)
}

// servedSerialWith: the serial a handshake verified against roots gets.
func servedSerialWith(e endpoint, roots *x509.CertPool) (*big.Int, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", fmt.Sprintf("%s:%d", e.host, e.mqtts), &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// noKeyLeaks: no private key (its PEM header, or a line of a given key's
// base64 body) in the operator's logs (its events), the HAProxy and broker
// logs, any cluster's status (conditions carry the error messages) or the
// operator's metrics.
func noKeyLeaks(t *testing.T, c *client.Client, keys ...[]byte) {
	t.Helper()
	var bodies []string
	for _, k := range keys {
		inKey := false
		for _, l := range strings.Split(string(k), "\n") {
			switch {
			case strings.Contains(l, "BEGIN") && strings.Contains(l, "PRIVATE KEY"):
				inKey = true
			case strings.Contains(l, "END"):
				inKey = false
			case inKey && len(l) >= 40:
				bodies = append(bodies, l)
			}
		}
	}
	if len(bodies) < len(keys) {
		t.Fatalf("no key body found in %d keys", len(keys))
	}
	places := map[string]string{}
	places["operator logs"] = testutil.ServiceLogs(stack + "_operator")
	svcs := docker(t, "service", "ls", "--filter", "label=mqtt.swarm/operator", "--format", "{{.Name}}")
	for _, svc := range strings.Fields(svcs) {
		places[svc+" logs"] = testutil.ServiceLogs(svc)
	}
	list, err := c.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(list)
	places["statuses"] = string(b)
	resp, err := (&http.Client{Transport: testutil.APITransport(), Timeout: 10 * time.Second}).Get(os.Getenv("MQTTCTL_SERVER") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	places["metrics"] = string(m)
	if len(places["operator logs"]) == 0 || !strings.Contains(places["metrics"], "mqttoperator_certificate_expiration_timestamp_seconds") {
		t.Fatalf("nothing to search: %d bytes of operator logs, metrics %d bytes", len(places["operator logs"]), len(m))
	}
	for where, text := range places {
		if strings.Contains(text, "PRIVATE KEY") {
			t.Errorf("a private key header in the %s", where)
		}
		for _, body := range bodies {
			if strings.Contains(text, body) {
				t.Errorf("a private key's body in the %s", where)
			}
		}
	}
}

// TestCredentialsEncryptedAtRest: the operator's raft data (log, snapshots,
// on its volume) holds the generated password and the private keys only
// encrypted: neither the password nor a private key (in clear or as the
// JSON base64 of its PEM) appears in any file.
func TestCredentialsEncryptedAtRest(t *testing.T) {
	c := newClient(t)
	cr, err := c.Credentials(context.Background(), "quickstart")
	if err != nil {
		t.Fatal(err)
	}
	dir := docker(t, "volume", "inspect", "-f", "{{.Mountpoint}}", stack+"_data")
	needles := map[string][]byte{
		"the MQTT password":              []byte(cr.Password),
		"a private key PEM":              []byte("PRIVATE KEY"),
		"a private key PEM, base64":      []byte(base64.StdEncoding.EncodeToString([]byte("-----BEGIN PRIVATE KEY-----"))[:24]),
		"the password file line, base64": []byte(base64.StdEncoding.EncodeToString([]byte(cr.Username + ":$7$"))[:8]),
	}
	files := 0
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for what, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s in clear in %s", what, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 2 {
		t.Fatalf("only %d files under %s: not the raft data", files, dir)
	}
	// The check can fail: the credentials are there, sealed.
	if !strings.Contains(readAll(t, dir), `"sealed"`) {
		t.Fatal("no sealed credentials found in the raft data")
	}
}

func readAll(t *testing.T, dir string) string {
	var sb strings.Builder
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			sb.Write(b)
		}
		return nil
	})
	return sb.String()
}
