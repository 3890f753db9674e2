package exporter

import "testing"

func TestMetricNamesAndValues(t *testing.T) {
	t.Parallel()
	for sub, want := range map[string]string{
		"clients/connected":           "mosquitto_clients_connected",
		"publish/messages/received":   "mosquitto_publish_messages_received_total",
		"retained messages/count":     "mosquitto_retained_messages_count",
		"load/messages/received/1min": "",
		"version":                     "",
	} {
		if got, _ := metricName(sub); got != want {
			t.Errorf("%s: %q, want %q", sub, got, want)
		}
	}
	if _, counter := metricName("messages/sent"); !counter {
		t.Error("messages/sent is a counter")
	}
	for p, want := range map[string]float64{"12": 12, "3.5": 3.5, "42 seconds": 42} {
		if v, ok := parseValue(p); !ok || v != want {
			t.Errorf("%q: %v %v", p, v, ok)
		}
	}
	if _, ok := parseValue("mosquitto version 2.0.21"); ok {
		t.Error("a version parsed as a number")
	}
}
