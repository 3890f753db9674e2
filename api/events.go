package api

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Event types.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

// Event is one of the operator's recent actions on a cluster (created a
// secret, issued a certificate, moved the hub, scaled...), like a
// Kubernetes event: a repeat of the same one counts up.
type Event struct {
	// Type: Normal or Warning.
	Type string `json:"type"`
	// Reason is a short CamelCase word: Created, CertificateIssued, ...
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Count of times it happened between FirstTime and LastTime.
	Count     int32       `json:"count"`
	FirstTime metav1.Time `json:"firstTime"`
	LastTime  metav1.Time `json:"lastTime"`
}

// EventList is a cluster's recent events, oldest first.
type EventList struct {
	Cluster string  `json:"cluster"`
	Items   []Event `json:"items"`
}

// Same: e and o are one event (type, reason and message); a repeat counts
// up instead of adding an entry.
func (e Event) Same(o Event) bool {
	return e.Type == o.Type && e.Reason == o.Reason && e.Message == o.Message
}
