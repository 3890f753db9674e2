package api

import (
	"strings"
	"time"
)

// Built-in defaults. Image defaults are the official images; an operator
// installed offline passes its own through Defaults.
const (
	DefaultBrokerImage       = "eclipse-mosquitto:2.0"
	DefaultLoadBalancerImage = "haproxy:2.8"
	DefaultReplicas          = 3
	DefaultLBReplicas        = 2
	DefaultMQTTPort          = 1883
	DefaultMQTTSPort         = 8883
	DefaultAutosaveInterval  = Duration("30s")
	DefaultCatchUpWindow     = Duration("60s")
	DefaultCertDuration      = Duration("2160h")
	DefaultCAOverlap         = Duration("720h")
	DefaultKeyAlgorithm      = KeyECDSAP256
	DefaultClientAuth        = ClientAuthNone
	DefaultSyncDelay         = Duration("1s")
	DefaultConnectTimeout    = Duration("1500ms")
	DefaultBalance           = BalanceClientID
	DefaultScaleDownDelay    = Duration("5m")
	// DefaultConnectionRate paces a reconnect storm (connections a second
	// into each HAProxy task; README, "Reconnect storms").
	DefaultConnectionRate = 200
)

// Defaults are the operator's configurable defaults.
type Defaults struct {
	BrokerImage       string
	LoadBalancerImage string
}

// BuiltinDefaults are the defaults with no operator configuration.
func BuiltinDefaults() Defaults {
	return Defaults{BrokerImage: DefaultBrokerImage, LoadBalancerImage: DefaultLoadBalancerImage}
}

// Default fills every omitted field of obj in place. It never overwrites a
// value the user gave, valid or not: validation reports those.
func Default(obj *MqttCluster, d Defaults) {
	if obj.APIVersion == "" {
		obj.APIVersion = APIVersion
	}
	if obj.Kind == "" {
		obj.Kind = KindMqttCluster
	}
	if d.BrokerImage == "" {
		d.BrokerImage = DefaultBrokerImage
	}
	if d.LoadBalancerImage == "" {
		d.LoadBalancerImage = DefaultLoadBalancerImage
	}
	s := &obj.Spec
	// An empty list or map means the same as an omitted one: keep one form,
	// so that what is stored survives a JSON round trip unchanged.
	nilIfEmpty(&s.TLS.DNSNames)
	nilIfEmpty(&s.TLS.IPAddresses)
	nilIfEmpty(&s.Placement.Constraints)
	if len(obj.Labels) == 0 {
		obj.Labels = nil
	}
	if len(obj.Annotations) == 0 {
		obj.Annotations = nil
	}
	switch {
	case s.Scaling.Auto():
		setInt32(&s.Scaling.Min, 1)
		setString((*string)(&s.Scaling.ScaleDownDelay), string(DefaultScaleDownDelay))
	case s.Scaling.PerNode():
	default:
		setInt32(&s.Replicas, DefaultReplicas)
	}
	setString(&s.Broker.Image, d.BrokerImage)
	setBool(&s.Broker.Persistence.Enabled, true)
	setString((*string)(&s.Broker.Persistence.AutosaveInterval), string(DefaultAutosaveInterval))
	setString((*string)(&s.Broker.CatchUp.Window), string(DefaultCatchUpWindow))
	setString(&s.LoadBalancer.Image, d.LoadBalancerImage)
	setInt32(&s.LoadBalancer.Replicas, DefaultLBReplicas)
	setString((*string)(&s.LoadBalancer.Balance), string(DefaultBalance))
	setInt32(&s.LoadBalancer.Ports.MQTT, DefaultMQTTPort)
	setInt32(&s.LoadBalancer.Ports.MQTTS, DefaultMQTTSPort)
	setString((*string)(&s.LoadBalancer.ConnectTimeout), string(DefaultConnectTimeout))
	setInt32(&s.LoadBalancer.Limits.ConnectionRate, DefaultConnectionRate)
	setString((*string)(&s.TLS.Duration), string(DefaultCertDuration))
	if s.TLS.RenewBefore == "" {
		// A third of the lifetime, as cert-manager does. An unparsable
		// duration is left for validation to report.
		if d, err := s.TLS.Duration.Parse(); err == nil && d > 0 {
			s.TLS.RenewBefore = FormatDuration(d / 3)
		}
	}
	setString((*string)(&s.TLS.KeyAlgorithm), string(DefaultKeyAlgorithm))
	setString((*string)(&s.TLS.CAOverlap), string(DefaultCAOverlap))
	setString((*string)(&s.TLS.ClientAuth), string(DefaultClientAuth))
	setBool(&s.Auth.AllowAnonymous, false)
	setBool(&s.Sync.Enabled, false)
	setString((*string)(&s.Sync.Delay), string(DefaultSyncDelay))
	setString((*string)(&s.UpdatePolicy.Approval), string(ApprovalAuto))
}

// FormatDuration writes d the way people do: 720h, not 720h0m0s.
func FormatDuration(d time.Duration) Duration {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return Duration(s)
}

func nilIfEmpty(p *[]string) {
	if len(*p) == 0 {
		*p = nil
	}
}

func setInt32(p **int32, v int32) {
	if *p == nil {
		*p = &v
	}
}

func setBool(p **bool, v bool) {
	if *p == nil {
		*p = &v
	}
}

func setString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

// Brokers is how many brokers the defaulted cluster c runs:
// spec.replicas, or with spec.scaling.mode Auto the count the operator
// decided (status.scaling.replicas), kept within min and max (min before
// the first decision).
func Brokers(c *MqttCluster) int {
	s := c.Spec
	if s.Scaling.PerNode() {
		// Every broker tied to a node, parked ones included (their
		// services stay, scaled to 0); one before the first decision.
		n := 1
		if st := c.Status.Scaling; st != nil {
			for _, b := range st.Nodes {
				n = max(n, int(b.Broker)+1)
			}
		}
		return n
	}
	if !s.Scaling.Auto() {
		if s.Replicas == nil {
			return DefaultReplicas
		}
		return int(*s.Replicas)
	}
	lo, hi := int32(1), int32(MaxReplicas)
	if s.Scaling.Min != nil {
		lo = *s.Scaling.Min
	}
	if s.Scaling.Max != nil {
		hi = max(*s.Scaling.Max, lo)
	}
	n := lo
	if st := c.Status.Scaling; st != nil && st.Replicas > 0 {
		n = st.Replicas
	}
	return int(min(max(n, lo), hi))
}

// Parked lists the brokers of a PerNode cluster whose node does not admit
// them now (nil for other modes, and with spec.sync): their services stay,
// scaled to 0.
func Parked(c *MqttCluster) map[int]bool {
	if c.Spec.Sync.Enabled != nil && *c.Spec.Sync.Enabled {
		return nil
	}
	return Away(c)
}

// Away lists the brokers of a PerNode cluster whose node does not admit
// them now (nil for other modes): parked, or with spec.sync running on
// another node.
func Away(c *MqttCluster) map[int]bool {
	if !c.Spec.Scaling.PerNode() || c.Status.Scaling == nil {
		return nil
	}
	var out map[int]bool
	active := map[int]bool{}
	for _, b := range c.Status.Scaling.Nodes {
		active[int(b.Broker)] = active[int(b.Broker)] || b.Active
	}
	for i := 0; i < Brokers(c); i++ {
		if !active[i] {
			if out == nil {
				out = map[int]bool{}
			}
			out[i] = true
		}
	}
	return out
}

// BrokerNode is the node broker i of a PerNode cluster is tied to ("":
// none, or another mode).
func BrokerNode(c *MqttCluster, i int) string {
	if !c.Spec.Scaling.PerNode() || c.Status.Scaling == nil {
		return ""
	}
	for _, b := range c.Status.Scaling.Nodes {
		if int(b.Broker) == i {
			return b.Node
		}
	}
	return ""
}

// Ptr returns a pointer to v, for building specs in code and tests.
func Ptr[T any](v T) *T { return &v }
