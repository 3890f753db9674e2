package api

import (
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/distribution/reference"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Limits the validation enforces.
const (
	MaxNameLength = 40
	MinReplicas   = 1
	MaxReplicas   = 15
	// MaxTargetPerBroker bounds spec.scaling's per-broker targets.
	MaxTargetPerBroker = 10000000
	MinCertDuration    = time.Minute
	// MaxCAOverlap bounds spec.tls.caOverlap.
	MaxCAOverlap = 365 * 24 * time.Hour
	MaxSyncDelay = time.Hour
	// MinMemoryBytes is Docker's smallest memory limit (6 MB).
	MinMemoryBytes = 6 * 1024 * 1024
	// MinNanoCPUs is Docker's smallest CPU limit (0.01 CPU).
	MinNanoCPUs = 10_000_000
)

// Validate checks a defaulted object and returns every rule it breaks, with
// field paths. An empty list means the object is valid.
func Validate(obj *MqttCluster) ErrorList {
	var errs ErrorList
	if obj.APIVersion != APIVersion {
		errs.add("apiVersion", ReasonNotSupported, "unsupported value %q: must be %s", obj.APIVersion, APIVersion)
	}
	if obj.Kind != KindMqttCluster {
		errs.add("kind", ReasonNotSupported, "unsupported value %q: must be %s", obj.Kind, KindMqttCluster)
	}
	validateMeta(obj, &errs)
	validateSpec(&obj.Spec, &errs)
	return errs
}

// ValidateName checks an object name on its own (used for URL paths).
func ValidateName(name string) ErrorList {
	var errs ErrorList
	validateName(name, "metadata.name", &errs)
	return errs
}

func validateName(name, path string, errs *ErrorList) {
	switch {
	case name == "":
		errs.add(path, ReasonRequired, "required")
	case len(name) > MaxNameLength:
		errs.add(path, ReasonInvalid, "must be at most %d characters, got %d", MaxNameLength, len(name))
	default:
		if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
			errs.add(path, ReasonInvalid, "%q is not a DNS label: %s", name, strings.Join(msgs, "; "))
		}
	}
}

func validateMeta(obj *MqttCluster, errs *ErrorList) { validateObjectMeta(&obj.ObjectMeta, errs) }

func validateObjectMeta(m *metav1.ObjectMeta, errs *ErrorList) {
	validateName(m.Name, "metadata.name", errs)
	for _, k := range sortedKeys(m.Labels) {
		p := "metadata.labels[" + k + "]"
		for _, msg := range validation.IsQualifiedName(k) {
			errs.add(p, ReasonInvalid, "invalid key %q: %s", k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(m.Labels[k]) {
			errs.add(p, ReasonInvalid, "invalid value %q: %s", m.Labels[k], msg)
		}
	}
	total := 0
	for _, k := range sortedKeys(m.Annotations) {
		for _, msg := range validation.IsQualifiedName(k) {
			errs.add("metadata.annotations["+k+"]", ReasonInvalid, "invalid key %q: %s", k, msg)
		}
		total += len(k) + len(m.Annotations[k])
	}
	if total > 256*1024 {
		errs.add("metadata.annotations", ReasonInvalid, "must be at most 256 KiB in all, got %d bytes", total)
	}
	forbid := func(set bool, field string) {
		if set {
			errs.add("metadata."+field, ReasonForbidden, "not supported by this API: must not be set")
		}
	}
	forbid(m.Namespace != "", "namespace")
	forbid(m.GenerateName != "", "generateName")
	forbid(len(m.Finalizers) > 0, "finalizers")
	forbid(len(m.OwnerReferences) > 0, "ownerReferences")
	forbid(len(m.ManagedFields) > 0, "managedFields")
	forbid(m.DeletionTimestamp != nil, "deletionTimestamp")
	forbid(m.DeletionGracePeriodSeconds != nil, "deletionGracePeriodSeconds")
	forbid(m.SelfLink != "", "selfLink")
}

func validateSpec(s *MqttClusterSpec, errs *ErrorList) {
	validateScaling(s, errs)

	validateImage(s.Broker.Image, "spec.broker.image", errs)
	validateDuration(s.Broker.Persistence.AutosaveInterval, "spec.broker.persistence.autosaveInterval", time.Second, 24*time.Hour, errs)
	validateDuration(s.Broker.CatchUp.Window, "spec.broker.catchUp.window", 0, 10*time.Minute, errs)
	if q, ok := validateQuantity(s.Broker.Resources.Memory, "spec.broker.resources.memory", errs); ok {
		if q.Value() < MinMemoryBytes {
			errs.add("spec.broker.resources.memory", ReasonInvalid, "must be at least 6Mi (Docker's smallest limit), got %s", s.Broker.Resources.Memory)
		}
	}
	if q, ok := validateQuantity(s.Broker.Resources.CPUs, "spec.broker.resources.cpus", errs); ok {
		if nano := q.ScaledValue(resource.Nano); nano < MinNanoCPUs {
			errs.add("spec.broker.resources.cpus", ReasonInvalid, "must be at least 0.01 (10m), got %s", s.Broker.Resources.CPUs)
		}
	}

	lb := &s.LoadBalancer
	validateImage(lb.Image, "spec.loadBalancer.image", errs)
	validateRange(lb.Replicas, "spec.loadBalancer.replicas", MinReplicas, MaxReplicas, errs)
	switch lb.Balance {
	case BalanceClientID, BalanceLeastConn, BalanceRoundRobin:
	default:
		errs.add("spec.loadBalancer.balance", ReasonNotSupported, "unsupported value %q: must be one of clientid, leastconn, roundrobin", lb.Balance)
	}
	validateDuration(lb.ConnectTimeout, "spec.loadBalancer.connectTimeout", 10*time.Millisecond, 10*time.Second, errs)
	if r := lb.Limits.ConnectionRate; r != nil && *r != 0 && (*r < 10 || *r > 1000000) {
		errs.add("spec.loadBalancer.limits.connectionRate", ReasonInvalid, "must be 0 (no limit) or between 10 and 1000000 connections per second, got %d", *r)
	}
	if r := lb.Limits.ConnectionRatePerClient; r != nil && (*r < 1 || *r > 100000) {
		errs.add("spec.loadBalancer.limits.connectionRatePerClient", ReasonInvalid, "must be between 1 and 100000 connections per minute, got %d", *r)
	}
	mqttOK := validatePort(lb.Ports.MQTT, "spec.loadBalancer.ports.mqtt", errs)
	mqttsOK := validatePort(lb.Ports.MQTTS, "spec.loadBalancer.ports.mqtts", errs)
	if mqttOK && mqttsOK {
		mqtt, mqtts := *lb.Ports.MQTT, *lb.Ports.MQTTS
		switch {
		case mqtt == 0 && mqtts == 0:
			errs.add("spec.loadBalancer.ports", ReasonInvalid, "mqtt and mqtts must not both be 0: at least one listener must stay on")
		case mqtt != 0 && mqtt == mqtts:
			errs.add("spec.loadBalancer.ports.mqtts", ReasonDuplicate, "must differ from spec.loadBalancer.ports.mqtt (both %d)", mqtt)
		}
	}

	t := &s.TLS
	for i, n := range t.DNSNames {
		p := fmt.Sprintf("spec.tls.dnsNames[%d]", i)
		name := strings.TrimPrefix(n, "*.")
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			errs.add(p, ReasonInvalid, "%q is not a DNS name: %s", n, strings.Join(msgs, "; "))
		}
	}
	if len(t.DNSNames) > 100 {
		errs.add("spec.tls.dnsNames", ReasonInvalid, "must have at most 100 items, got %d", len(t.DNSNames))
	}
	for i, ip := range t.IPAddresses {
		if net.ParseIP(ip) == nil {
			errs.add(fmt.Sprintf("spec.tls.ipAddresses[%d]", i), ReasonInvalid, "%q is not an IP address", ip)
		}
	}
	if len(t.IPAddresses) > 100 {
		errs.add("spec.tls.ipAddresses", ReasonInvalid, "must have at most 100 items, got %d", len(t.IPAddresses))
	}
	dur, durOK := validateDuration(t.Duration, "spec.tls.duration", MinCertDuration, 100*365*24*time.Hour, errs)
	renew, renewOK := validateDuration(t.RenewBefore, "spec.tls.renewBefore", time.Second, 100*365*24*time.Hour, errs)
	if durOK && renewOK && renew >= dur {
		errs.add("spec.tls.renewBefore", ReasonInvalid, "must be shorter than spec.tls.duration (%s), got %s", t.Duration, t.RenewBefore)
	}

	switch t.KeyAlgorithm {
	case KeyECDSAP256, KeyRSA2048, KeyRSA3072:
	default:
		errs.add("spec.tls.keyAlgorithm", ReasonNotSupported, "unsupported value %q: must be one of ECDSA-P256, RSA-2048, RSA-3072", t.KeyAlgorithm)
	}
	validateDuration(t.CAOverlap, "spec.tls.caOverlap", 0, MaxCAOverlap, errs)
	switch t.ClientAuth {
	case ClientAuthNone:
	case ClientAuthOptional, ClientAuthRequired:
		if t.ClientCASecret == "" {
			errs.add("spec.tls.clientCASecret", ReasonRequired, "required when spec.tls.clientAuth is %s", t.ClientAuth)
		}
	default:
		errs.add("spec.tls.clientAuth", ReasonNotSupported, "unsupported value %q: must be one of none, optional, required", t.ClientAuth)
	}
	if t.ClientCASecret != "" {
		validateSecretName(t.ClientCASecret, "spec.tls.clientCASecret", errs)
	}
	if t.CertificateSecret != "" {
		validateSecretName(t.CertificateSecret, "spec.tls.certificateSecret", errs)
	}
	if t.IssuerSecret != "" {
		validateSecretName(t.IssuerSecret, "spec.tls.issuerSecret", errs)
		if t.CertificateSecret != "" {
			errs.add("spec.tls.issuerSecret", ReasonInvalid, "excludes spec.tls.certificateSecret: a certificate is either issued (by the operator's CA or this issuer) or supplied")
		}
	}

	if sec := s.Auth.PasswordFileSecret; sec != "" {
		validateSecretName(sec, "spec.auth.passwordFileSecret", errs)
	}
	ValidateACLs(s.Auth.ACLs, "spec.auth.acls", errs)

	validateDuration(s.Sync.Delay, "spec.sync.delay", 0, MaxSyncDelay, errs)
	switch s.UpdatePolicy.Approval {
	case ApprovalAuto, ApprovalManual:
	default:
		errs.add("spec.updatePolicy.approval", ReasonNotSupported, "unsupported value %q: must be one of auto, manual", s.UpdatePolicy.Approval)
	}
	if s.Sync.Enabled != nil && *s.Sync.Enabled && s.Broker.Persistence.Enabled != nil && !*s.Broker.Persistence.Enabled {
		errs.add("spec.sync.enabled", ReasonInvalid, "requires spec.broker.persistence.enabled: without persistence a broker keeps no data to sync")
	}

	if len(s.Placement.Constraints) > 32 {
		errs.add("spec.placement.constraints", ReasonInvalid, "must have at most 32 items, got %d", len(s.Placement.Constraints))
	}
	for i, c := range s.Placement.Constraints {
		if msg := checkConstraint(c); msg != "" {
			errs.add(fmt.Sprintf("spec.placement.constraints[%d]", i), ReasonInvalid, "%q %s", c, msg)
		}
	}
}

// validateScaling checks spec.replicas and spec.scaling together: Fixed
// takes replicas and none of the Auto fields, Auto the reverse.
func validateScaling(s *MqttClusterSpec, errs *ErrorList) {
	sc := &s.Scaling
	switch sc.Mode {
	case "", ScalingFixed:
		validateRange(s.Replicas, "spec.replicas", MinReplicas, MaxReplicas, errs)
		forbidAutoFields(sc, "Fixed: spec.replicas brokers", errs)
	case ScalingAuto:
		if s.Replicas != nil {
			errs.add("spec.replicas", ReasonForbidden, "must be omitted with spec.scaling.mode Auto: spec.scaling.min and max bound the broker count")
		}
		validateRange(sc.Min, "spec.scaling.min", MinReplicas, MaxReplicas, errs)
		validateRange(sc.Max, "spec.scaling.max", MinReplicas, MaxReplicas, errs)
		if sc.Min != nil && sc.Max != nil && *sc.Min > *sc.Max {
			errs.add("spec.scaling.max", ReasonInvalid, "must be at least spec.scaling.min (%d), got %d", *sc.Min, *sc.Max)
		}
		if sc.ConnectionsPerBroker == nil && sc.MessagesPerSecondPerBroker == nil {
			errs.add("spec.scaling", ReasonRequired, "mode Auto needs a target: connectionsPerBroker, messagesPerSecondPerBroker or both")
		}
		if v := sc.ConnectionsPerBroker; v != nil && (*v < 1 || *v > MaxTargetPerBroker) {
			errs.add("spec.scaling.connectionsPerBroker", ReasonInvalid, "must be between 1 and %d, got %d", MaxTargetPerBroker, *v)
		}
		if v := sc.MessagesPerSecondPerBroker; v != nil && (*v < 1 || *v > MaxTargetPerBroker) {
			errs.add("spec.scaling.messagesPerSecondPerBroker", ReasonInvalid, "must be between 1 and %d, got %d", MaxTargetPerBroker, *v)
		}
		validateDuration(sc.ScaleDownDelay, "spec.scaling.scaleDownDelay", 10*time.Second, 24*time.Hour, errs)
	case ScalingPerNode:
		if s.Replicas != nil {
			errs.add("spec.replicas", ReasonForbidden, "must be omitted with spec.scaling.mode PerNode: a broker runs on every node spec.placement admits")
		}
		forbidAutoFields(sc, "PerNode (a broker on every node spec.placement admits)", errs)
	default:
		errs.add("spec.scaling.mode", ReasonNotSupported, "unsupported value %q: must be one of Fixed, Auto, PerNode", sc.Mode)
	}
}

// forbidAutoFields rejects the fields of mode Auto in another mode.
func forbidAutoFields(sc *ScalingSpec, mode string, errs *ErrorList) {
	for _, f := range []struct {
		set  bool
		name string
	}{{sc.Min != nil, "min"}, {sc.Max != nil, "max"}, {sc.ConnectionsPerBroker != nil, "connectionsPerBroker"},
		{sc.MessagesPerSecondPerBroker != nil, "messagesPerSecondPerBroker"}, {sc.ScaleDownDelay != "", "scaleDownDelay"}} {
		if f.set {
			errs.add("spec.scaling."+f.name, ReasonForbidden, "only with spec.scaling.mode Auto (the mode is %s)", mode)
		}
	}
}

func validateRange(v *int32, path string, min, max int32, errs *ErrorList) {
	if v == nil {
		errs.add(path, ReasonRequired, "required")
		return
	}
	if *v < min || *v > max {
		errs.add(path, ReasonInvalid, "must be between %d and %d, got %d", min, max, *v)
	}
}

func validatePort(v *int32, path string, errs *ErrorList) bool {
	if v == nil {
		errs.add(path, ReasonRequired, "required")
		return false
	}
	if *v < 0 || *v > 65535 {
		errs.add(path, ReasonInvalid, "must be between 1 and 65535, or 0 to turn the listener off, got %d", *v)
		return false
	}
	return true
}

func validateImage(img, path string, errs *ErrorList) {
	if img == "" {
		errs.add(path, ReasonRequired, "required")
		return
	}
	if len(img) > 255 {
		errs.add(path, ReasonInvalid, "must be at most 255 characters, got %d", len(img))
		return
	}
	if _, err := reference.ParseNormalizedNamed(img); err != nil {
		errs.add(path, ReasonInvalid, "%q is not a valid image reference: %v", img, err)
	}
}

func validateDuration(d Duration, path string, min, max time.Duration, errs *ErrorList) (time.Duration, bool) {
	if d == "" {
		errs.add(path, ReasonRequired, "required")
		return 0, false
	}
	v, err := d.Parse()
	if err != nil {
		errs.add(path, ReasonInvalid, "%q is not a duration (use units such as 30s, 15m, 2160h)", string(d))
		return 0, false
	}
	if v < min || v > max {
		errs.add(path, ReasonInvalid, "must be between %s and %s, got %s", fmtDur(min), fmtDur(max), d)
		return v, false
	}
	return v, true
}

func fmtDur(d time.Duration) string { return string(FormatDuration(d)) }

var quantityRE = regexp.MustCompile(`^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$`)

func validateQuantity(q Quantity, path string, errs *ErrorList) (resource.Quantity, bool) {
	if q == "" {
		return resource.Quantity{}, false
	}
	// The regular expression is the CRD's pattern: no sign, no spaces.
	if !quantityRE.MatchString(string(q)) {
		errs.add(path, ReasonInvalid, "%q is not a quantity (use forms such as 256Mi, 1Gi, 0.5, 500m)", string(q))
		return resource.Quantity{}, false
	}
	v, err := resource.ParseQuantity(string(q))
	if err != nil {
		errs.add(path, ReasonInvalid, "%q is not a quantity: %v", string(q), err)
		return resource.Quantity{}, false
	}
	return v, true
}

var secretNameRE = regexp.MustCompile(`^[a-zA-Z0-9]+([a-zA-Z0-9_.-]*[a-zA-Z0-9])?$`)

func validateSecretName(name, path string, errs *ErrorList) {
	if len(name) > 64 || !secretNameRE.MatchString(name) {
		errs.add(path, ReasonInvalid, "%q is not a Docker secret name (letters, digits, '-', '_', '.', at most 64, starting and ending with a letter or digit)", name)
	}
}

var (
	constraintKeyRE = regexp.MustCompile(`^(node\.(id|hostname|role|platform\.os|platform\.arch)|(node|engine)\.labels\.[A-Za-z0-9_.-]+)$`)
	// Swarm's own value rule (swarmkit manager/constraint).
	constraintValueRE = regexp.MustCompile(`^[A-Za-z0-9:\-_\s.*()?+\[\]\\^$|/]+$`)
)

// checkConstraint returns why a placement constraint is malformed, or "".
func checkConstraint(c string) string {
	op := ""
	i := strings.Index(c, "==")
	j := strings.Index(c, "!=")
	switch {
	case i >= 0 && (j < 0 || i < j):
		op = "=="
	case j >= 0:
		op = "!="
		i = j
	default:
		return "must have the form KEY==VALUE or KEY!=VALUE"
	}
	key := strings.TrimSpace(c[:i])
	val := strings.TrimSpace(c[i+len(op):])
	if !constraintKeyRE.MatchString(key) {
		return fmt.Sprintf("has unknown key %q: use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME or engine.labels.NAME", key)
	}
	if val == "" {
		return "has an empty value"
	}
	if strings.Contains(val, "==") || strings.Contains(val, "!=") {
		return "has more than one operator"
	}
	if !constraintValueRE.MatchString(val) {
		return fmt.Sprintf("has an invalid value %q", val)
	}
	return ""
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// ValidateACLs checks authorization rules: a known access, and a topic
// filter Mosquitto accepts (+ and # alone in their level, # last; no
// control characters).
func ValidateACLs(rules []ACLRule, path string, errs *ErrorList) {
	if len(rules) > MaxACLRules {
		errs.add(path, ReasonInvalid, "must have at most %d items, got %d", MaxACLRules, len(rules))
	}
	for i, r := range rules {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch r.Access {
		case AccessRead, AccessWrite, AccessReadWrite, AccessDeny:
		case "":
			errs.add(p+".access", ReasonRequired, "required: one of read, write, readwrite, deny")
		default:
			errs.add(p+".access", ReasonNotSupported, "unsupported value %q: must be one of read, write, readwrite, deny", r.Access)
		}
		if msg := checkTopicFilter(r.Topic); msg != "" {
			errs.add(p+".topic", ReasonInvalid, "%q %s", r.Topic, msg)
		}
	}
}

// checkTopicFilter says what is wrong with an MQTT topic filter ("" when
// nothing is).
func checkTopicFilter(f string) string {
	switch {
	case f == "":
		return "is empty: a topic filter is required"
	case len(f) > 1024:
		return fmt.Sprintf("is %d bytes long: at most 1024", len(f))
	case strings.ContainsFunc(f, func(r rune) bool { return r < 0x20 || r == 0x7f || r == utf8.RuneError }):
		return "holds a control character or invalid UTF-8"
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return "is not a valid filter: # must be a whole level and the last one"
		}
		if strings.Contains(l, "+") && l != "+" {
			return "is not a valid filter: + must be a whole level"
		}
	}
	return ""
}
