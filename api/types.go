package api

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Group, version and kind of the objects this package describes.
const (
	Group           = "mqtt.swarm"
	Version         = "v1alpha1"
	APIVersion      = Group + "/" + Version
	KindMqttCluster = "MqttCluster"
	// Resource is the plural, lower-case name used in URLs and the CRD.
	Resource = "mqttclusters"
)

// MqttCluster is a highly available MQTT cluster on Docker Swarm: Mosquitto
// brokers bridged into one logical broker behind HAProxy, with TLS
// certificates issued and rotated by the operator.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=mqttclusters,singular=mqttcluster,shortName=mqc,scope=Cluster
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Brokers",type=integer,JSONPath=`.status.scaling.replicas`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MqttCluster struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec MqttClusterSpec `json:"spec,omitempty"`
	// +optional
	Status MqttClusterStatus `json:"status,omitempty"`
}

// MqttClusterSpec is the desired state of a cluster. Every field is
// optional: the server fills defaults at admission and stores the result.
//
// +kubebuilder:validation:XValidation:rule="!has(self.sync) || !has(self.sync.enabled) || !self.sync.enabled || !has(self.broker) || !has(self.broker.persistence) || !has(self.broker.persistence.enabled) || self.broker.persistence.enabled",message="spec.sync.enabled requires spec.broker.persistence.enabled"
// +kubebuilder:validation:XValidation:rule="!has(self.scaling) || !has(self.scaling.mode) || self.scaling.mode == 'Fixed' || !has(self.replicas)",message="spec.replicas must be omitted with spec.scaling.mode Auto or PerNode"
type MqttClusterSpec struct {
	// Replicas is the number of Mosquitto brokers, 1 to 15 (default 3),
	// with spec.scaling.mode Fixed. With Auto it is omitted: the operator
	// decides the count between spec.scaling.min and max.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=15
	Replicas *int32 `json:"replicas,omitempty"`
	// Scaling says how the broker count is set: Fixed (spec.replicas) or
	// Auto (from the live load).
	// +optional
	Scaling ScalingSpec `json:"scaling,omitzero"`
	// +optional
	// +kubebuilder:default={}
	Broker BrokerSpec `json:"broker,omitempty"`
	// +optional
	// +kubebuilder:default={}
	LoadBalancer LoadBalancerSpec `json:"loadBalancer,omitempty"`
	// +optional
	// +kubebuilder:default={}
	TLS TLSSpec `json:"tls,omitempty"`
	// +optional
	// +kubebuilder:default={}
	Auth AuthSpec `json:"auth,omitempty"`
	// +optional
	// +kubebuilder:default={}
	Sync SyncSpec `json:"sync,omitempty"`
	// +optional
	// +kubebuilder:default={}
	Placement PlacementSpec `json:"placement,omitempty"`
	// +optional
	// +kubebuilder:default={}
	UpdatePolicy UpdatePolicySpec `json:"updatePolicy,omitempty"`
}

// ScalingMode is how the broker count is set.
// +kubebuilder:validation:Enum=Fixed;Auto;PerNode
type ScalingMode string

// Scaling modes.
const (
	// ScalingFixed: spec.replicas brokers (also when mode is omitted).
	ScalingFixed ScalingMode = "Fixed"
	// ScalingAuto: the operator sets the count from the live load.
	ScalingAuto ScalingMode = "Auto"
	// ScalingPerNode: a broker on every node the placement admits, tied
	// to its node.
	ScalingPerNode ScalingMode = "PerNode"
)

// ScalingSpec sets the broker count. With mode Auto the operator reads the
// clients connected through HAProxy and the messages the brokers receive,
// and keeps count = max(connections / connectionsPerBroker, messages per
// second / messagesPerSecondPerBroker), rounded up, between min and max:
// up at once, down one broker at a time once the load has stayed low
// (with 10 % headroom) for scaleDownDelay, each removed broker drained in
// HAProxy first (and, with spec.sync, its last state synced).
// +kubebuilder:validation:XValidation:rule="!has(self.min) || !has(self.max) || self.min <= self.max",message="max must be at least min"
// +kubebuilder:validation:XValidation:rule="!has(self.mode) || self.mode != 'Auto' || has(self.max)",message="mode Auto needs max"
// +kubebuilder:validation:XValidation:rule="!has(self.mode) || self.mode != 'Auto' || has(self.connectionsPerBroker) || has(self.messagesPerSecondPerBroker)",message="mode Auto needs a target: connectionsPerBroker or messagesPerSecondPerBroker"
// +kubebuilder:validation:XValidation:rule="(has(self.mode) && self.mode == 'Auto') || (!has(self.min) && !has(self.max) && !has(self.connectionsPerBroker) && !has(self.messagesPerSecondPerBroker) && !has(self.scaleDownDelay))",message="min, max, targets and scaleDownDelay only with mode Auto"
type ScalingSpec struct {
	// Mode: Fixed (default) or Auto.
	// +optional
	Mode ScalingMode `json:"mode,omitempty"`
	// Min is the fewest brokers with Auto, 1 to 15 (default 1).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=15
	Min *int32 `json:"min,omitempty"`
	// Max is the most brokers with Auto, min to 15 (required with Auto).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=15
	Max *int32 `json:"max,omitempty"`
	// ConnectionsPerBroker is the target number of clients per broker.
	// +optional
	// +kubebuilder:validation:Minimum=1
	ConnectionsPerBroker *int32 `json:"connectionsPerBroker,omitempty"`
	// MessagesPerSecondPerBroker is the target rate of messages the
	// cluster's clients publish, per broker. Every broker carries every
	// message (the bridges): what more brokers spread is the deliveries to
	// subscribers and the connections.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MessagesPerSecondPerBroker *int32 `json:"messagesPerSecondPerBroker,omitempty"`
	// ScaleDownDelay is how long the load must stay low before a broker is
	// removed, and the least time between a scale and the next scale-down
	// (default 5m, 10s to 24h).
	// +optional
	ScaleDownDelay Duration `json:"scaleDownDelay,omitempty"`
}

// Auto says whether the operator sets the broker count from the load.
func (s ScalingSpec) Auto() bool { return s.Mode == ScalingAuto }

// PerNode says whether a broker runs on every node the placement admits.
func (s ScalingSpec) PerNode() bool { return s.Mode == ScalingPerNode }

// UpdateApproval says whether a change that restarts brokers waits.
// +kubebuilder:validation:Enum=auto;manual
type UpdateApproval string

// Update approvals.
const (
	ApprovalAuto   UpdateApproval = "auto"
	ApprovalManual UpdateApproval = "manual"
)

// UpdatePolicySpec says how a change that restarts brokers rolls out: one
// broker at a time, each drained in HAProxy first, the next once it runs
// again.
type UpdatePolicySpec struct {
	// Approval: auto rolls such a change at once; manual holds it (the
	// brokers keep the old spec) until mqttctl approve NAME.
	// +optional
	// +kubebuilder:default=auto
	Approval UpdateApproval `json:"approval,omitempty"`
}

// BrokerSpec configures the Mosquitto brokers.
type BrokerSpec struct {
	// Image is the Mosquitto image. Default: the operator's --broker-image
	// (built in: eclipse-mosquitto:2.0).
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(\.[a-zA-Z0-9-]+)*(:[0-9]+)?(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`
	Image string `json:"image,omitempty"`
	// +optional
	// +kubebuilder:default={}
	Persistence PersistenceSpec `json:"persistence,omitempty"`
	// +optional
	// +kubebuilder:default={}
	Resources ResourcesSpec `json:"resources,omitempty"`
	// +optional
	// +kubebuilder:default={}
	CatchUp CatchUpSpec `json:"catchUp,omitempty"`
}

// CatchUpSpec: a persistent session lives on one broker. When its client
// comes back through another broker (its own was stopped, killed or lost
// with its node), that broker replays to it what it missed, from the
// messages it kept; a broker's bridge is caught up the same way after a
// restart.
type CatchUpSpec struct {
	// Window is how long each broker keeps the messages it took in (in
	// memory: at most a quarter of resources.memory, at most 64Mi). A
	// session that moves within it misses nothing; 0s turns catch-up off.
	// +optional
	// +kubebuilder:default="60s"
	Window Duration `json:"window,omitempty"`
}

// PersistenceSpec configures Mosquitto's on-disk persistence.
type PersistenceSpec struct {
	// Enabled keeps sessions, queued and retained messages on a volume.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`
	// AutosaveInterval is how often Mosquitto writes its state to disk.
	// +optional
	// +kubebuilder:default="30s"
	AutosaveInterval Duration `json:"autosaveInterval,omitempty"`
}

// ResourcesSpec limits each broker's resources. Empty means no limit.
type ResourcesSpec struct {
	// Memory limit as a quantity (256Mi, 1Gi), at least 6Mi.
	// +optional
	Memory Quantity `json:"memory,omitempty"`
	// CPUs limit as a quantity ("0.5", "500m", "2").
	// +optional
	CPUs Quantity `json:"cpus,omitempty"`
}

// BalanceMode is how HAProxy picks a broker for a new connection.
// +kubebuilder:validation:Enum=clientid;leastconn;roundrobin
type BalanceMode string

// Balance modes.
const (
	BalanceClientID   BalanceMode = "clientid"
	BalanceLeastConn  BalanceMode = "leastconn"
	BalanceRoundRobin BalanceMode = "roundrobin"
)

// LoadBalancerSpec configures HAProxy in front of the brokers.
type LoadBalancerSpec struct {
	// Image is the HAProxy image. Default: the operator's --lb-image
	// (built in: haproxy:2.8).
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(\.[a-zA-Z0-9-]+)*(:[0-9]+)?(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`
	Image string `json:"image,omitempty"`
	// Replicas is the number of HAProxy tasks, 1 to 15, at most one per node.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=15
	Replicas *int32 `json:"replicas,omitempty"`
	// Balance: clientid (hash of the MQTT client identifier, so a client
	// returns to the same broker), leastconn or roundrobin.
	// +optional
	// +kubebuilder:default=clientid
	Balance BalanceMode `json:"balance,omitempty"`
	// +optional
	// +kubebuilder:default={}
	Ports PortsSpec `json:"ports,omitempty"`
	// ConnectTimeout is how long HAProxy waits for a broker to accept a
	// connection, TLS handshake included, before it tries another, 10ms
	// to 10s. Under a reconnect storm a busy broker's handshake or a
	// connection dropped from its full accept queue (resent by the kernel
	// after 1 s) takes longer than half a second: a shorter timeout turns
	// those into failures and retries that feed the storm. It is also
	// how long a client whose broker has just died may wait once before
	// HAProxy tries another.
	// +optional
	// +kubebuilder:default="1500ms"
	ConnectTimeout Duration `json:"connectTimeout,omitempty"`
	// +optional
	Limits LoadBalancerLimits `json:"limits,omitzero"`
}

// LoadBalancerLimits bound what one client may do at the load balancer.
// +kubebuilder:validation:XValidation:rule="!has(self.connectionRate) || self.connectionRate == 0 || self.connectionRate >= 10",message="connectionRate must be 0 (no limit) or at least 10"
type LoadBalancerLimits struct {
	// ConnectionRatePerClient is how many connections one MQTT client id
	// may open per minute through each HAProxy task (unset: no limit): a
	// device stuck in a reconnect loop is refused at HAProxy, before any
	// broker, and the others are not starved.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	ConnectionRatePerClient *int32 `json:"connectionRatePerClient,omitempty"`
	// ConnectionRate is how many new connections per second each HAProxy
	// task accepts, its listeners together (HAProxy's maxconnrate; 0: no
	// limit). Past it, connections wait in the listen backlog instead of
	// being refused, so a fleet that reconnects at once (its load balancer
	// or node gone) is let in at this pace: TLS handshakes do not swamp
	// the node. Unpaced, a storm of 8,000 MQTTS clients on 2 cores never
	// came back (HAProxy saturated, its connections to the brokers timing
	// out); the default, 200, brought it back in 56 s. About 100 per core
	// of the load balancer's node.
	// +optional
	// +kubebuilder:default=200
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	ConnectionRate *int32 `json:"connectionRate,omitempty"`
}

// PortsSpec lists the host ports HAProxy publishes. 0 turns a listener off;
// at least one must stay on and the two must differ.
// +kubebuilder:validation:XValidation:rule="!has(self.mqtt) || !has(self.mqtts) || self.mqtt != 0 || self.mqtts != 0",message="mqtt and mqtts must not both be 0"
// +kubebuilder:validation:XValidation:rule="!has(self.mqtt) || !has(self.mqtts) || self.mqtt == 0 || self.mqtt != self.mqtts",message="mqtt and mqtts must differ"
type PortsSpec struct {
	// MQTT is the plain MQTT port; 0 turns plain MQTT off.
	// +optional
	// +kubebuilder:default=1883
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	MQTT *int32 `json:"mqtt,omitempty"`
	// MQTTS is the MQTT over TLS port (TLS ends at HAProxy); 0 turns it off.
	// +optional
	// +kubebuilder:default=8883
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	MQTTS *int32 `json:"mqtts,omitempty"`
}

// TLSSpec configures the server certificate the operator issues.
// +kubebuilder:validation:XValidation:rule="!has(self.duration) || !has(self.renewBefore) || duration(self.renewBefore) < duration(self.duration)",message="renewBefore must be shorter than duration"
// +kubebuilder:validation:XValidation:rule="!has(self.clientAuth) || self.clientAuth == 'none' || has(self.clientCASecret)",message="clientCASecret is required when clientAuth is optional or required"
// +kubebuilder:validation:XValidation:rule="!has(self.issuerSecret) || !has(self.certificateSecret)",message="issuerSecret and certificateSecret exclude each other"
type TLSSpec struct {
	// DNSNames the certificate is valid for, besides the cluster's own
	// service names.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$`
	DNSNames []string `json:"dnsNames,omitempty"`
	// IPAddresses the certificate is valid for.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:Pattern=`^([0-9.]+|[0-9a-fA-F:.]+)$`
	IPAddresses []string `json:"ipAddresses,omitempty"`
	// Duration is the server certificate's lifetime, at least 1m.
	// +optional
	// +kubebuilder:default="2160h"
	Duration Duration `json:"duration,omitempty"`
	// RenewBefore is how long before expiry the certificate is renewed.
	// Default: a third of duration.
	// +optional
	RenewBefore Duration `json:"renewBefore,omitempty"`
	// KeyAlgorithm of the server certificate, and of the CA when the
	// operator generates one (at creation or at a CA rotation).
	// +optional
	// +kubebuilder:default=ECDSA-P256
	KeyAlgorithm KeyAlgorithm `json:"keyAlgorithm,omitempty"`
	// CAOverlap is how long a CA rotation distributes the new CA (in the
	// CA bundle, next to the old one) before server certificates are signed
	// by it: clients that trust only the old CA keep connecting until then.
	// 0s to 8760h.
	// +optional
	// +kubebuilder:default="720h"
	CAOverlap Duration `json:"caOverlap,omitempty"`
	// ClientAuth asks MQTTS clients for a certificate (mutual TLS, checked
	// by HAProxy): none, optional (checked when given) or required.
	// +optional
	// +kubebuilder:default=none
	ClientAuth ClientAuthMode `json:"clientAuth,omitempty"`
	// ClientCASecret names a Docker secret holding the CA certificates
	// (PEM) client certificates must chain to. Required unless clientAuth
	// is none.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]+([a-zA-Z0-9_.-]*[a-zA-Z0-9])?$`
	ClientCASecret string `json:"clientCASecret,omitempty"`
	// CertificateSecret names a Docker secret holding a ready server
	// certificate chain and its key (PEM), served as is: the operator
	// issues no server certificate and reports this one's expiry. A new
	// secret name rolls the load balancer.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]+([a-zA-Z0-9_.-]*[a-zA-Z0-9])?$`
	CertificateSecret string `json:"certificateSecret,omitempty"`
	// IssuerSecret names a Docker secret holding a CA certificate and its
	// key (PEM) that signs the server certificate instead of the
	// operator's own CA. The operator never reads the key: a short Swarm
	// job mounting the secret signs the operator's certificate request.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]+([a-zA-Z0-9_.-]*[a-zA-Z0-9])?$`
	IssuerSecret string `json:"issuerSecret,omitempty"`
}

// KeyAlgorithm is a private key algorithm.
// +kubebuilder:validation:Enum=ECDSA-P256;RSA-2048;RSA-3072
type KeyAlgorithm string

// Key algorithms.
const (
	KeyECDSAP256 KeyAlgorithm = "ECDSA-P256"
	KeyRSA2048   KeyAlgorithm = "RSA-2048"
	KeyRSA3072   KeyAlgorithm = "RSA-3072"
)

// ClientAuthMode is whether HAProxy asks MQTTS clients for a certificate.
// +kubebuilder:validation:Enum=none;optional;required
type ClientAuthMode string

// Client authentication modes.
const (
	ClientAuthNone     ClientAuthMode = "none"
	ClientAuthOptional ClientAuthMode = "optional"
	ClientAuthRequired ClientAuthMode = "required"
)

// AuthSpec configures client authentication on the brokers.
type AuthSpec struct {
	// AllowAnonymous lets clients connect without a user name.
	// +optional
	// +kubebuilder:default=false
	AllowAnonymous *bool `json:"allowAnonymous,omitempty"`
	// PasswordFileSecret names a Docker secret holding a Mosquitto password
	// file. Empty: the operator generates one with a single user.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]+([a-zA-Z0-9_.-]*[a-zA-Z0-9])?$`
	PasswordFileSecret string `json:"passwordFileSecret,omitempty"`
	// ACLs are the cluster's authorization rules, for every user (the
	// password file's and the generated one): once there is one rule, a
	// publish, subscription or delivery no rule allows is refused (deny by
	// default), and a matching deny rule wins over any allow. %u in a
	// topic stands for the client's user name and %c for its client id
	// (a client whose name holds /, + or # matches no such rule). Applied
	// to every broker live, with no restart.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	ACLs []ACLRule `json:"acls,omitempty"`
}

// ACLRule allows or denies access to the topics a filter matches.
type ACLRule struct {
	// Topic is an MQTT topic filter (+ and # wildcards), with %u and %c
	// substituted per client.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^(#|(\+|[^+#/\x00-\x1f\x7f]*)(/(\+|[^+#/\x00-\x1f\x7f]*))*(/#)?)$`
	Topic string `json:"topic"`
	// Access: read (subscribe and receive), write (publish), readwrite, or
	// deny (neither, whatever else allows it).
	Access ACLAccess `json:"access"`
}

// ACLAccess is what an ACL rule grants.
// +kubebuilder:validation:Enum=read;write;readwrite;deny
type ACLAccess string

// The accesses a rule grants.
const (
	AccessRead      ACLAccess = "read"
	AccessWrite     ACLAccess = "write"
	AccessReadWrite ACLAccess = "readwrite"
	AccessDeny      ACLAccess = "deny"
)

// MaxACLRules bounds spec.auth.acls.
const MaxACLRules = 256

// SyncSpec configures lsyncd replication of each broker's data to the
// nodes where Swarm may reschedule it.
type SyncSpec struct {
	// Enabled turns data replication on.
	// +optional
	// +kubebuilder:default=false
	Enabled *bool `json:"enabled,omitempty"`
	// Delay is how long lsyncd gathers changes before a sync, 0s to 1h.
	// +optional
	// +kubebuilder:default="1s"
	Delay Duration `json:"delay,omitempty"`
}

// PlacementSpec restricts the nodes brokers run on.
type PlacementSpec struct {
	// Constraints in Swarm's form, KEY==VALUE or KEY!=VALUE, for example
	// node.labels.mqtt == true.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^\s*(node\.(id|hostname|role|platform\.os|platform\.arch)|(node|engine)\.labels\.[A-Za-z0-9_.-]+)\s*(==|!=)\s*[A-Za-z0-9:_.*()?+\[\]\\^$|/ -]*[A-Za-z0-9:_.*()?+\[\]\\^$|/-]\s*$`
	Constraints []string `json:"constraints,omitempty"`
}

// MqttClusterStatus is the observed state, written by the operator.
type MqttClusterStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Progressing, Degraded, SyncHealthy (spec.sync).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Brokers is the state of each broker.
	// +optional
	Brokers []BrokerStatus `json:"brokers,omitempty"`
	// Endpoints are the addresses clients connect to.
	// +optional
	Endpoints []string `json:"endpoints,omitempty"`
	// CAFingerprint is the SHA-256 fingerprint of the cluster CA.
	// +optional
	CAFingerprint string `json:"caFingerprint,omitempty"`
	// Hub is the broker at the root of the bridge tree: every other
	// broker's bridge leads to it.
	// +optional
	Hub string `json:"hub,omitempty"`
	// Certificate is the MQTTS server certificate and where it is served.
	// +optional
	Certificate *CertificateStatus `json:"certificate,omitempty"`
	// CARotation is set while a CA rotation runs.
	// +optional
	CARotation *CARotationStatus `json:"caRotation,omitempty"`
	// Sync is where each broker's data is replicated (spec.sync).
	// +optional
	Sync *SyncStatus `json:"sync,omitempty"`
	// Scaling is the broker count the operator decided and why
	// (spec.scaling.mode Auto).
	// +optional
	Scaling *ScalingStatus `json:"scaling,omitempty"`
}

// ScalingStatus is where automatic scaling stands.
type ScalingStatus struct {
	// Replicas is the broker count decided: what the cluster runs, or is
	// moving to.
	Replicas int32 `json:"replicas"`
	// Desired is what the last figures ask for, within min and max.
	// +optional
	Desired int32 `json:"desired,omitempty"`
	// Connections are the clients connected through HAProxy (every task).
	// +optional
	Connections *int64 `json:"connections,omitempty"`
	// MessagesPerSecond is the rate the cluster's clients publish at (the
	// brokers' one-minute average).
	// +optional
	MessagesPerSecond *int64 `json:"messagesPerSecond,omitempty"`
	// ObservedTime is when the figures were read.
	// +optional
	ObservedTime *metav1.Time `json:"observedTime,omitempty"`
	// LowSince is when the figures began to ask for fewer brokers (unset:
	// they do not).
	// +optional
	LowSince *metav1.Time `json:"lowSince,omitempty"`
	// LowPeak is the most brokers the figures asked for since LowSince: a
	// scale-down goes no lower.
	// +optional
	LowPeak int32 `json:"lowPeak,omitempty"`
	// LastScaleTime is when the count last changed.
	// +optional
	LastScaleTime *metav1.Time `json:"lastScaleTime,omitempty"`
	// Next says what happens next and when, in words.
	// +optional
	Next string `json:"next,omitempty"`
	// Nodes are the brokers of a PerNode cluster, each tied to its node:
	// broker Broker runs on Node while Active; a node that is drained,
	// loses the placement's labels or leaves parks its broker (stopped,
	// its data kept) until it returns — or, with spec.sync, sends it away
	// (it runs on another node the placement admits, its data following
	// it) until the node returns.
	// +optional
	Nodes []ScalingNode `json:"nodes,omitempty"`
}

// ScalingNode is one node's broker in a PerNode cluster.
type ScalingNode struct {
	Broker int32 `json:"broker"`
	// Node is the Swarm node ID; Hostname its name when last seen.
	Node string `json:"node"`
	// +optional
	Hostname string `json:"hostname,omitempty"`
	// Active: the node admits the broker (ready, active, matches the
	// placement); otherwise the broker is parked, or away with spec.sync.
	Active bool `json:"active"`
}

// SyncStatus reports the replication of the brokers' data.
type SyncStatus struct {
	// +optional
	Brokers []BrokerSyncStatus `json:"brokers,omitempty"`
}

// BrokerSyncStatus is one broker's data replication.
type BrokerSyncStatus struct {
	Name string `json:"name"`
	// Source is the node its data is pushed from: the node running it
	// (or, once stopped, the node it last ran on).
	// +optional
	Source string `json:"source,omitempty"`
	// Targets are the nodes holding a copy, where Swarm may move it.
	// +optional
	Targets []SyncTargetStatus `json:"targets,omitempty"`
}

// SyncTargetStatus is one copy of a broker's data.
type SyncTargetStatus struct {
	Node string `json:"node"`
	// LastSync is when the last successful sync to it began: the copy
	// holds the broker's data as of then.
	// +optional
	LastSync *metav1.Time `json:"lastSync,omitempty"`
	// Pending: the data changed since LastSync.
	// +optional
	Pending bool `json:"pending,omitempty"`
	// Error is the last sync's error, when it failed.
	// +optional
	Error string `json:"error,omitempty"`
}

// CARotationStatus is a CA rotation in progress: the next CA is in the CA
// bundle already and signs server certificates from SwitchAt on.
type CARotationStatus struct {
	// NextFingerprint is the SHA-256 fingerprint of the next CA.
	NextFingerprint string `json:"nextFingerprint"`
	// Reason: Requested or Expiring.
	// +optional
	Reason string `json:"reason,omitempty"`
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// +optional
	SwitchAt *metav1.Time `json:"switchAt,omitempty"`
}

// CertificateStatus describes the current MQTTS server certificate.
type CertificateStatus struct {
	// Serial is the certificate's serial number, in hex.
	Serial string `json:"serial"`
	// +optional
	NotBefore *metav1.Time `json:"notBefore,omitempty"`
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
	// RenewAt is when the operator renews it.
	// +optional
	RenewAt *metav1.Time `json:"renewAt,omitempty"`
	// Reason it was last issued: Missing, Expiring, DNSNamesChanged,
	// KeyTypeChanged, IssuerChanged, CARotated or Requested.
	// +optional
	Reason string `json:"reason,omitempty"`
	// IssuedAt is when the operator issued it.
	// +optional
	IssuedAt *metav1.Time `json:"issuedAt,omitempty"`
	// Serving counts the running load balancer tasks that serve it, of
	// those running ("2/2"): the certificate reaches them through
	// HAProxy's runtime API, with no restart.
	// +optional
	Serving string `json:"serving,omitempty"`
}

// ApprovedGenerationAnnotation holds the generation whose broker restarts
// were approved (mqttctl approve sets it), with updatePolicy.approval
// manual.
const ApprovedGenerationAnnotation = "mqtt.swarm/approved-generation"

// Condition types.
const (
	ConditionReady       = "Ready"
	ConditionProgressing = "Progressing"
	ConditionDegraded    = "Degraded"
	// ConditionSyncHealthy (spec.sync): every broker's data reached every
	// target recently.
	ConditionSyncHealthy = "SyncHealthy"
	// ConditionACLsApplied: every broker serves the cluster's current
	// users and ACL rules (spec.auth.acls).
	ConditionACLsApplied = "ACLsApplied"
)

// BrokerStatus is the observed state of one broker.
type BrokerStatus struct {
	Name string `json:"name"`
	// +optional
	Node string `json:"node,omitempty"`
	// +optional
	State string `json:"state,omitempty"`
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// Bridge is this broker's bridge toward the hub, as observed (none
	// for broker 0, the root).
	// +optional
	Bridge *BridgeStatus `json:"bridge,omitempty"`
}

// BridgeStatus is one broker's bridge, as its parent's log shows it.
type BridgeStatus struct {
	// Parent is the broker the bridge is (or was last) connected to.
	// +optional
	Parent string `json:"parent,omitempty"`
	// Connected is whether the bridge is up.
	Connected bool `json:"connected"`
	// Since is when it came up or went down.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// MqttClusterList is a list of clusters, as the list endpoint answers.
type MqttClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MqttCluster `json:"items"`
}

// Duration is a Go duration string such as 30s or 2160h.
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
type Duration string

// Parse returns the duration value.
func (d Duration) Parse() (time.Duration, error) { return time.ParseDuration(string(d)) }

// Quantity is a Kubernetes-style quantity string such as 256Mi or 0.5.
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:Pattern=`^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$`
type Quantity string
