package api

import "strings"

// Parse decodes one document strictly, fills defaults and validates it: the
// single admission pipeline the CLI and the HTTP API share. It returns the
// defaulted object, or an *InvalidError listing every problem at once.
func Parse(doc []byte, d Defaults) (*MqttCluster, error) {
	obj, errs := Decode(doc)
	if obj == nil {
		return nil, &InvalidError{Errors: errs}
	}
	if err := Admit(obj, d, errs); err != nil {
		return nil, err
	}
	return obj, nil
}

// Admit defaults and validates an already decoded object, adding earlier
// decoding errors to the report. It changes obj in place.
func Admit(obj *MqttCluster, d Defaults, earlier ErrorList) error {
	Default(obj, d)
	errs := earlier
	for _, fe := range Validate(obj) {
		// A field that did not decode was left empty and then defaulted:
		// its decoding error is the one to report.
		if !earlier.covers(fe.Field) {
			errs = append(errs, fe)
		}
	}
	if len(errs) > 0 {
		return &InvalidError{Name: obj.Name, Errors: errs}
	}
	return nil
}

// Result is one document of a multi-document stream.
type Result struct {
	// Index is the document's position in its stream, from 1.
	Index  int
	Object *MqttCluster
	Err    error
}

// ParseAll parses every document of a YAML stream (or one JSON document).
func ParseAll(data []byte, d Defaults) []Result {
	docs := SplitDocuments(data)
	out := make([]Result, 0, len(docs))
	for i, doc := range docs {
		obj, err := Parse(doc, d)
		out = append(out, Result{Index: i + 1, Object: obj, Err: err})
	}
	return out
}

func (l ErrorList) covers(field string) bool {
	for _, e := range l {
		if e.Reason == ReasonTypeInvalid && (field == e.Field || strings.HasPrefix(field, e.Field+".")) {
			return true
		}
	}
	return false
}
