package api

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// ConditionReasons are the reasons the operator sets, by condition type:
// a status written through the API must use them (ValidateStatus), so a
// made-up status (Ready=True for reason Fake) cannot drive metrics and
// alerts.
var ConditionReasons = map[string][]string{
	ConditionReady:       {"AllRunning", "NotAllRunning", "AwaitingApproval", "InvalidSpec", "InternalError"},
	ConditionProgressing: {"AwaitingApproval", "Reconciled", "Reconciling"},
	ConditionDegraded:    {"NoErrors", "ReconcileError", "MissingSecret", "Signing", "InvalidSpec", "InternalError"},
	ConditionSyncHealthy: {"Synced", "NotSynced"},
	ConditionACLsApplied: {"Applied", "Applying", "NotEnforced"},
}

// maxConditionMessage bounds a condition message (Kubernetes' bound).
const maxConditionMessage = 32768

// ValidateStatus checks a status against what the operator writes:
// known condition types and reasons, True/False/Unknown, one condition
// per type, an observed generation no newer than the object's, endpoints
// that are mqtt:// or mqtts:// URLs. Every error is returned, with its
// path.
func ValidateStatus(st *MqttClusterStatus, generation int64) ErrorList {
	var errs ErrorList
	if st.ObservedGeneration < 0 || st.ObservedGeneration > generation {
		errs.add("status.observedGeneration", ReasonInvalid, "must be between 0 and the object's generation (%d)", generation)
	}
	seen := map[string]bool{}
	for i, c := range st.Conditions {
		p := fmt.Sprintf("status.conditions[%d]", i)
		reasons, ok := ConditionReasons[c.Type]
		if !ok {
			errs.add(p+".type", ReasonNotSupported, "unsupported value %q: must be one of %s", c.Type, strings.Join(conditionTypes(), ", "))
		} else if !slices.Contains(reasons, c.Reason) {
			errs.add(p+".reason", ReasonNotSupported, "unsupported value %q for %s: must be one of %s", c.Reason, c.Type, strings.Join(reasons, ", "))
		}
		if seen[c.Type] {
			errs.add(p+".type", ReasonDuplicate, "duplicate condition %q", c.Type)
		}
		seen[c.Type] = true
		if s := string(c.Status); s != "True" && s != "False" && s != "Unknown" {
			errs.add(p+".status", ReasonNotSupported, "unsupported value %q: must be True, False or Unknown", s)
		}
		if len(c.Message) > maxConditionMessage {
			errs.add(p+".message", ReasonInvalid, "longer than %d bytes", maxConditionMessage)
		}
		if c.ObservedGeneration < 0 || c.ObservedGeneration > generation {
			errs.add(p+".observedGeneration", ReasonInvalid, "must be between 0 and the object's generation (%d)", generation)
		}
	}
	for i, e := range st.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "mqtt" && u.Scheme != "mqtts") || u.Host == "" {
			errs.add(fmt.Sprintf("status.endpoints[%d]", i), ReasonInvalid, "must be an mqtt:// or mqtts:// URL with a host")
		}
	}
	return errs
}

func conditionTypes() []string {
	out := make([]string, 0, len(ConditionReasons))
	for t := range ConditionReasons {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
