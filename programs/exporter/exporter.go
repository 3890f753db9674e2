package exporter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// counters are the $SYS topics that only grow: exported as counters.
var counters = map[string]string{
	"messages/received":         "mosquitto_messages_received_total",
	"messages/sent":             "mosquitto_messages_sent_total",
	"publish/messages/received": "mosquitto_publish_messages_received_total",
	"publish/messages/sent":     "mosquitto_publish_messages_sent_total",
	"publish/messages/dropped":  "mosquitto_publish_messages_dropped_total",
	"publish/bytes/received":    "mosquitto_publish_bytes_received_total",
	"publish/bytes/sent":        "mosquitto_publish_bytes_sent_total",
	"bytes/received":            "mosquitto_bytes_received_total",
	"bytes/sent":                "mosquitto_bytes_sent_total",
	"uptime":                    "mosquitto_uptime_seconds",
}

var nonName = regexp.MustCompile(`[^a-z0-9_]+`)

// metricName maps a $SYS/broker/ subtopic to a metric (and whether it is
// a counter); "" for topics not exported (the load averages: rate() of
// the counters says the same).
func metricName(sub string) (string, bool) {
	if n, ok := counters[sub]; ok {
		return n, true
	}
	if strings.HasPrefix(sub, "load/") || sub == "version" || sub == "timestamp" {
		return "", false
	}
	return "mosquitto_" + strings.Trim(nonName.ReplaceAllString(strings.ToLower(sub), "_"), "_"), false
}

// parseValue reads a $SYS payload's number ("12", "3.5", "42 seconds").
func parseValue(p string) (float64, bool) {
	f := strings.Fields(p)
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, err == nil
}

// Exporter follows the $SYS topics of a cluster's brokers.
type Exporter struct {
	Cluster string
	// Addr returns broker i's address (host:port of its internal
	// listener).
	Addr     func(i int) string
	Brokers  int
	User     string
	Password string
	// RootCAs, when set, reaches the brokers over TLS and verifies their
	// certificate (the control-plane CA) against the name dialed.
	RootCAs *x509.CertPool
	Log     *slog.Logger

	mu     sync.Mutex
	values map[int]map[string]string // broker -> subtopic -> payload
	up     map[int]bool
	exists map[int]bool
}

// Run follows every broker until ctx ends.
func (e *Exporter) Run(ctx context.Context) {
	e.values, e.up, e.exists = map[int]map[string]string{}, map[int]bool{}, map[int]bool{}
	var wg sync.WaitGroup
	for i := 0; i < e.Brokers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); e.follow(ctx, i) }()
	}
	wg.Wait()
}

func (e *Exporter) set(i int, f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f()
}

// follow keeps a subscription to broker i's $SYS topics while the broker
// exists (its name resolves).
func (e *Exporter) follow(ctx context.Context, i int) {
	for ctx.Err() == nil {
		addr := e.Addr(i)
		host, _, _ := net.SplitHostPort(addr)
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := net.DefaultResolver.LookupHost(rctx, host)
		cancel()
		if err != nil {
			e.set(i, func() { delete(e.exists, i); delete(e.up, i); delete(e.values, i) })
			sleep(ctx, 5*time.Second)
			continue
		}
		e.set(i, func() { e.exists[i] = true })
		lost := make(chan struct{})
		scheme := "tcp://"
		if e.RootCAs != nil {
			scheme = "ssl://"
		}
		o := mqtt.NewClientOptions().AddBroker(scheme + addr).
			SetClientID(fmt.Sprintf("%s-exporter-%d", e.Cluster, i)).SetUsername(e.User).SetPassword(e.Password).
			SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(3 * time.Second).SetKeepAlive(15 * time.Second).
			SetConnectionLostHandler(func(mqtt.Client, error) { close(lost) })
		if e.RootCAs != nil {
			o.SetTLSConfig(&tls.Config{RootCAs: e.RootCAs, ServerName: host, MinVersion: tls.VersionTLS12})
		}
		c := mqtt.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			e.set(i, func() { e.up[i] = false })
			sleep(ctx, 2*time.Second)
			continue
		}
		tok := c.Subscribe("$SYS/broker/#", 0, func(_ mqtt.Client, m mqtt.Message) {
			sub := strings.TrimPrefix(m.Topic(), "$SYS/broker/")
			e.set(i, func() {
				if e.values[i] == nil {
					e.values[i] = map[string]string{}
				}
				e.values[i][sub] = string(m.Payload())
			})
		})
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			c.Disconnect(100)
			e.set(i, func() { e.up[i] = false })
			sleep(ctx, 2*time.Second)
			continue
		}
		e.set(i, func() { e.up[i] = true })
		select {
		case <-ctx.Done():
			c.Disconnect(100)
		case <-lost:
			e.set(i, func() { e.up[i] = false; delete(e.values, i) })
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Describe: the metrics are dynamic (one per $SYS topic).
func (e *Exporter) Describe(chan<- *prometheus.Desc) {}

// Collect reports mosquitto_up and every numeric $SYS value, per broker.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	labels := []string{"cluster", "broker"}
	up := prometheus.NewDesc("mosquitto_up", "1 if the exporter is subscribed to the broker's $SYS topics.", labels, nil)
	info := prometheus.NewDesc("mosquitto_info", "The broker's version.", append(labels, "version"), nil)
	for i := range e.exists {
		broker := api.BrokerService(e.Cluster, i)
		v := 0.0
		if e.up[i] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(up, prometheus.GaugeValue, v, e.Cluster, broker)
		if ver, ok := e.values[i]["version"]; ok {
			ch <- prometheus.MustNewConstMetric(info, prometheus.GaugeValue, 1, e.Cluster, broker, strings.TrimPrefix(ver, "mosquitto version "))
		}
		for sub, payload := range e.values[i] {
			name, counter := metricName(sub)
			val, ok := parseValue(payload)
			if name == "" || !ok {
				continue
			}
			t := prometheus.GaugeValue
			if counter {
				t = prometheus.CounterValue
			}
			d := prometheus.NewDesc(name, "Mosquitto's $SYS/broker/"+sub+".", labels, nil)
			ch <- prometheus.MustNewConstMetric(d, t, val, e.Cluster, broker)
		}
	}
}
