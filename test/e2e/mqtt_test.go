//go:build e2e

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

// endpoint is how a test reaches a cluster through its load balancer.
type endpoint struct {
	host        string
	mqtt, mqtts int
	user, pass  string
	roots       *x509.CertPool
}

func (e endpoint) tls(serverName string) *tls.Config {
	return &tls.Config{RootCAs: e.roots, ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// conn is one MQTT client and the connection losses it saw.
type conn struct {
	mqtt.Client
	id   string
	lost atomic.Int32
}

// dial connects one MQTT 3.1.1 client through the load balancer: plain
// when tc is nil, TLS otherwise. It does not reconnect by itself.
func dial(e endpoint, id string, tc *tls.Config, user, pass string) (*conn, error) {
	c := &conn{id: id}
	o := mqtt.NewClientOptions().SetClientID(id).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(2 * time.Second).
		SetKeepAlive(30 * time.Second).SetCleanSession(true).SetOrderMatters(false).
		SetConnectionLostHandler(func(mqtt.Client, error) { c.lost.Add(1) })
	if tc != nil {
		o.AddBroker(fmt.Sprintf("ssl://%s:%d", e.host, e.mqtts)).SetTLSConfig(tc)
	} else {
		o.AddBroker(fmt.Sprintf("tcp://%s:%d", e.host, e.mqtt))
	}
	c.Client = mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, fmt.Errorf("connect %s: timed out", id)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", id, err)
	}
	return c, nil
}

// roundTrip subscribes and publishes on the same connection at QoS 1 and
// waits for the message to come back through the broker.
func roundTrip(c *conn, topic, payload string) error {
	got := make(chan string, 1)
	if tok := c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- string(m.Payload()):
		default:
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return fmt.Errorf("subscribe %s: %v", topic, tok.Error())
	}
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return fmt.Errorf("publish %s: %v", topic, tok.Error())
	}
	select {
	case p := <-got:
		if p != payload {
			return fmt.Errorf("got %q, want %q", p, payload)
		}
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("no message on %s within 5s", topic)
	}
}

// publishOnce connects, publishes at QoS 1 and disconnects.
func publishOnce(e endpoint, id string) error {
	c, err := dial(e, id, nil, e.user, e.pass)
	if err != nil {
		return err
	}
	defer c.Disconnect(0)
	tok := c.Publish("e2e/probe", 1, false, "x")
	if !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
		return fmt.Errorf("publish: %v", tok.Error())
	}
	return nil
}

// quickstart is the cluster make up deployed, from .local/quickstart.env.
func quickstart(t *testing.T) endpoint {
	t.Helper()
	need := func(k string) string {
		v := os.Getenv(k)
		if v == "" {
			t.Fatalf("%s is not set (hack/e2e.sh sources .local/quickstart.env)", k)
		}
		return v
	}
	pass, err := os.ReadFile(need("MQTT_PASSWORD_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(need("MQTT_CAFILE"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		t.Fatal("no certificate in MQTT_CAFILE")
	}
	var e endpoint
	e.host, e.user, e.pass, e.roots = need("MQTT_HOST"), need("MQTT_USERNAME"), strings.TrimSpace(string(pass)), roots
	fmt.Sscan(need("MQTT_PORT"), &e.mqtt)
	fmt.Sscan(need("MQTTS_PORT"), &e.mqtts)
	return e
}

// brokerOf maps client ids to the broker service whose log shows them
// connecting (Mosquitto logs "New client connected from ... as ID").
func brokerOf(t *testing.T, cluster string, replicas int, ids []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 0; i < replicas; i++ {
		svc := fmt.Sprintf("%s-broker-%d", cluster, i)
		logs := []byte(testutil.RunningLogs(svc))
		for _, id := range ids {
			if regexp.MustCompile(` as ` + regexp.QuoteMeta(id) + ` \(`).Match(logs) {
				out[id] = svc
			}
		}
	}
	return out
}

// TestQuickstartServesMQTTAndMQTTS: the cluster make up made serves MQTT
// and MQTTS (verified against the cluster CA for localhost and 127.0.0.1),
// and refuses wrong passwords, anonymous clients and TLS 1.1.
func TestQuickstartServesMQTTAndMQTTS(t *testing.T) {
	e := quickstart(t)
	cases := map[string]*tls.Config{
		"plain":               nil,
		"tls-localhost":       e.tls("localhost"),
		"tls-127.0.0.1":       e.tls("127.0.0.1"),
		"tls-lb-service-name": e.tls("quickstart-lb"),
	}
	for name, tc := range cases {
		c, err := dial(e, "e2e-"+name, tc, e.user, e.pass)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := roundTrip(c, "e2e/"+name, "hello "+name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		c.Disconnect(100)
	}
	// The certificate is really checked: another host name fails.
	if _, err := dial(e, "e2e-badname", e.tls("mqtt.example.org"), e.user, e.pass); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a wrong server name was accepted: %v", err)
	}
	for name, tc := range map[string]*tls.Config{"plain": nil, "tls": e.tls("localhost")} {
		if _, err := dial(e, "e2e-wrongpw-"+name, tc, e.user, "wrong-"+e.pass); err == nil || !strings.Contains(err.Error(), "not Authorized") {
			t.Errorf("%s: a wrong password was not refused: %v", name, err)
		}
		if _, err := dial(e, "e2e-anon-"+name, tc, "", ""); err == nil || !strings.Contains(err.Error(), "not Authorized") {
			t.Errorf("%s: an anonymous client was not refused: %v", name, err)
		}
	}
	// TLS 1.1 is refused; 1.2 is accepted.
	old := &tls.Config{RootCAs: e.roots, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", fmt.Sprintf("%s:%d", e.host, e.mqtts), old); err == nil {
		c.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	tls12 := e.tls("localhost")
	tls12.MaxVersion = tls.VersionTLS12
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", fmt.Sprintf("%s:%d", e.host, e.mqtts), tls12)
	if err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	c.Close()
}
