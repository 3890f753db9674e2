//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/big"
	"net"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
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
	time.Sleep(500 * time.Millisecond) // the loop runs before the rotation

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
	time.Sleep(time.Second) // the loop runs on after the rotation
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
