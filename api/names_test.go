package api

import "testing"

func TestBrokerIndex(t *testing.T) {
	for _, tc := range []struct {
		cluster, svc string
		i            int
		ok           bool
	}{
		{"iot", "iot-broker-0", 0, true},
		{"iot", "iot-broker-14", 14, true},
		{"iot", BrokerService("iot", 3), 3, true},
		{"iot", "iot-lb", 0, false},
		{"iot", "iot-broker-", 0, false},
		{"iot", "iot-broker-01", 0, false},
		{"iot", "iot-broker-1-data", 0, false},
		{"iot", "other-broker-1", 0, false},
		{"iot-broker", "iot-broker-broker-2", 2, true},
	} {
		i, ok := BrokerIndex(tc.cluster, tc.svc)
		if i != tc.i || ok != tc.ok {
			t.Errorf("BrokerIndex(%q, %q) = %d, %v; want %d, %v", tc.cluster, tc.svc, i, ok, tc.i, tc.ok)
		}
	}
}
