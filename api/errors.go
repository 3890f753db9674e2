package api

import (
	"fmt"
	"strings"
)

// Reasons a field is rejected. The values are Kubernetes' metav1.CauseType
// strings, so clients that know Kubernetes errors read them the same way.
const (
	ReasonUnknown      = "FieldValueUnknown"
	ReasonDuplicate    = "FieldValueDuplicate"
	ReasonRequired     = "FieldValueRequired"
	ReasonInvalid      = "FieldValueInvalid"
	ReasonNotSupported = "FieldValueNotSupported"
	ReasonForbidden    = "FieldValueForbidden"
	ReasonTypeInvalid  = "FieldValueTypeInvalid"
	ReasonSyntax       = "FieldValueSyntax"
)

// FieldError is one rule a field breaks: where, why (a Reason constant) and
// a message for people.
type FieldError struct {
	Field   string `json:"field"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// ErrorList is every rule an object breaks, in the order found.
type ErrorList []FieldError

func (l *ErrorList) add(field, reason, format string, args ...any) {
	*l = append(*l, FieldError{Field: field, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// Error joins the errors one per line.
func (l ErrorList) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// InvalidError rejects a whole object, listing every field error.
type InvalidError struct {
	// Name of the object, when known.
	Name   string
	Errors ErrorList
	// Kind of the object ("": MqttCluster).
	Kind string
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	kind := e.Kind
	if kind == "" {
		kind = KindMqttCluster
	}
	if e.Name != "" {
		fmt.Fprintf(&b, "%s %q is invalid:", kind, e.Name)
	} else {
		fmt.Fprintf(&b, "%s is invalid:", kind)
	}
	for _, fe := range e.Errors {
		b.WriteString("\n  * ")
		b.WriteString(fe.Error())
	}
	return b.String()
}
