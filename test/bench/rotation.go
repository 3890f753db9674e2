package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// handMaterial is the certificate material of the hand-made baseline.
var handMaterial credentials.Material

const rotationClients = 100

// tlsFleet is 100 MQTTS clients held open, half subscribed, and a QoS 1
// publish loop on the other half, counting what fails.
type tlsFleet struct {
	addr      string
	roots     *x509.CertPool
	clients   []mqtt.Client
	lost      atomic.Int64
	published atomic.Int64
	failed    atomic.Int64
	stop      chan struct{}
	done      chan struct{}
}

func newFleet(addr string, caPEM []byte, user, pass, tag string) (*tlsFleet, error) {
	f := &tlsFleet{addr: addr, roots: x509.NewCertPool(), stop: make(chan struct{}), done: make(chan struct{})}
	if !f.roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate")
	}
	var mu sync.Mutex
	var firstErr error
	for i := 0; i < rotationClients; i += 10 {
		var wg sync.WaitGroup
		for j := i; j < i+10; j++ {
			wg.Add(1)
			go func(j int) {
				defer wg.Done()
				o := mqtt.NewClientOptions().AddBroker("ssl://" + addr).SetTLSConfig(&tls.Config{RootCAs: f.roots, ServerName: "localhost"}).
					SetClientID(fmt.Sprintf("rot-%s-%03d", tag, j)).SetUsername(user).SetPassword(pass).
					SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(3 * time.Second).SetCleanSession(true).
					SetConnectionLostHandler(func(mqtt.Client, error) { f.lost.Add(1) })
				c := mqtt.NewClient(o)
				tok := c.Connect()
				mu.Lock()
				defer mu.Unlock()
				if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("connect to %s: %v", addr, tok.Error())
					}
					return
				}
				f.clients = append(f.clients, c)
			}(j)
		}
		wg.Wait()
	}
	if firstErr != nil {
		f.close()
		return nil, firstErr
	}
	for _, c := range f.clients[:rotationClients/2] {
		if tok := c.Subscribe("bench/rotation", 1, func(mqtt.Client, mqtt.Message) {}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			f.close()
			return nil, fmt.Errorf("subscribe: %v", tok.Error())
		}
	}
	go func() {
		defer close(f.done)
		for i := 0; ; i++ {
			select {
			case <-f.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			tok := f.clients[rotationClients/2+i%(rotationClients/2)].Publish("bench/rotation", 1, false, "x")
			if !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
				f.failed.Add(1)
			} else {
				f.published.Add(1)
			}
		}
	}()
	return f, nil
}

func (f *tlsFleet) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	for _, c := range f.clients {
		c.Disconnect(0)
	}
}

// dropped counts clients whose connection is gone.
func (f *tlsFleet) dropped() int {
	n := 0
	for _, c := range f.clients {
		if !c.IsConnectionOpen() {
			n++
		}
	}
	return n
}

func (f *tlsFleet) serial() (*big.Int, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", f.addr, &tls.Config{RootCAs: f.roots, ServerName: "localhost"})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// rotate runs one rotation and returns the time from its start until a
// new TLS handshake gets another certificate.
func (f *tlsFleet) rotate(do func() error) (time.Duration, error) {
	before, err := f.serial()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := do(); err != nil {
		return 0, err
	}
	for time.Since(start) < 2*time.Minute {
		if s, err := f.serial(); err == nil && s.Cmp(before) != 0 {
			return time.Since(start), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, errors.New("the new certificate was not served within 2 minutes")
}

// rotationBench: 100 MQTTS clients and a publish loop through three
// renewals by the operator (pushed into HAProxy), then through one renewal
// done the plain Swarm way on the hand-made stack (a new secret and
// docker service update, which restarts HAProxy).
func rotationBench(ctx context.Context, cl *client.Client, user, pass string) error {
	ca, err := cl.CA(ctx, benchCluster)
	if err != nil {
		return err
	}
	f, err := newFleet(fmt.Sprintf("127.0.0.1:%d", benchMQTT+5000), []byte(ca.Certificate), user, pass, "op")
	if err != nil {
		return err
	}
	var ours []time.Duration
	for i := 0; i < 3; i++ {
		d, err := f.rotate(func() error { _, err := cl.RenewCertificate(ctx, benchCluster); return err })
		if err != nil {
			f.close()
			return err
		}
		ours = append(ours, d)
		time.Sleep(500 * time.Millisecond) // the loop runs between rotations
	}
	close(f.stop)
	<-f.done
	opDropped, opFailed, opPublished := f.dropped(), f.failed.Load(), f.published.Load()
	f.close()

	// The baseline: the same certificate change the plain Swarm way.
	if _, err := byHand(user, pass); err != nil {
		return err
	}
	defer removeHandMade()
	h, err := newFleet(fmt.Sprintf("127.0.0.1:%d", handMQTT+5000), handMaterial.CA.CertPEM, user, pass, "hand")
	if err != nil {
		return err
	}
	handTook, err := h.rotate(func() error {
		c, err := api.Parse([]byte(benchSpec("bench-hand", handMQTT)), api.BuiltinDefaults())
		if err != nil {
			return err
		}
		c.Annotations = map[string]string{credentials.RenewAnnotation: time.Now().Format(time.RFC3339Nano)}
		next, _, _, err := credentials.Next(&handMaterial, c, time.Now())
		if err != nil {
			return err
		}
		dir, err := os.MkdirTemp("", "bench-rot-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		p := filepath.Join(dir, "tls.pem")
		if err := os.WriteFile(p, credentials.HAProxyPEM(next), 0o600); err != nil {
			return err
		}
		if _, err := sh("docker", "secret", "create", "--label", "bench=hand", "bench-hand-tls-2", p); err != nil {
			return err
		}
		_, err = sh("docker", "service", "update", "--detach", "--secret-rm", "bench-hand-tls",
			"--secret-add", "source=bench-hand-tls-2,target=mqtts.pem,mode=0400", "bench-hand-lb")
		return err
	})
	if err != nil {
		h.close()
		return err
	}
	time.Sleep(500 * time.Millisecond)
	close(h.stop)
	<-h.done
	handDropped, handFailed, handPublished := h.dropped(), h.failed.Load(), h.published.Load()
	h.close()

	fmt.Printf("\ncertificate rotation under load: %d MQTTS clients held open, QoS 1 publish every 20ms\n", rotationClients)
	fmt.Printf("  operator (mqttctl certificate renew, pushed into HAProxy), 3 rotations:\n")
	fmt.Printf("    dropped connections %d, failed publishes %d of %d   target 0 and 0\n", opDropped, opFailed, opPublished+opFailed)
	fmt.Printf("    renew request -> new serial served: min %s median %s max %s   target <= 1s\n", pct(ours, 0), pct(ours, 50), pct(ours, 100))
	fmt.Printf("  Swarm way (new secret + docker service update of HAProxy), 1 rotation:\n")
	fmt.Printf("    dropped connections %d, failed publishes %d of %d\n", handDropped, handFailed, handPublished+handFailed)
	fmt.Printf("    update -> new serial served: %s\n", handTook)
	return nil
}
