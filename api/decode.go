package api

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxDocumentBytes bounds one document, the same bound the HTTP API puts on
// a request body.
const MaxDocumentBytes = 1 << 20

// SplitDocuments splits a YAML stream on "---" lines. Empty documents
// (only whitespace and comments) are dropped. JSON input is one document.
func SplitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if hasContent(cur.Bytes()) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), len(data)+1)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.Equal(bytes.TrimRight(line, " \t\r"), []byte("---")) || bytes.HasPrefix(line, []byte("--- ")) {
			flush()
			continue
		}
		cur.Write(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

func hasContent(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("...")) {
			return true
		}
	}
	return false
}

// DecodeOne reads a request body that must hold exactly one object: an
// empty or whitespace-only body, a null, a value that is not an object,
// and a stream of more than one document are refused whole (a nil object
// with the reason), so nothing after the first document is ever dropped
// silently. Otherwise it is Decode.
func DecodeOne(body []byte) (*MqttCluster, ErrorList) {
	var errs ErrorList
	if !hasContent(body) {
		errs.add("", ReasonRequired, "the body is empty: send one %s object", KindMqttCluster)
		return nil, errs
	}
	// Count the documents as the YAML parser sees them (a "---" line, a
	// "..." end marker followed by more): one only.
	dec := yamlv2.NewDecoder(bytes.NewReader(body))
	n := 0
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs.add("", ReasonSyntax, "%s", cleanYAMLError(err))
			return nil, errs
		}
		n++
		if n == 1 {
			if v == nil {
				errs.add("", ReasonTypeInvalid, "the body is null: send one %s object", KindMqttCluster)
				return nil, errs
			}
			if _, ok := v.(map[any]any); !ok {
				errs.add("", ReasonTypeInvalid, "the body is a %s, not an object", yamlKind(v))
				return nil, errs
			}
		}
	}
	if n != 1 {
		errs.add("", ReasonSyntax, "the body holds %d documents: send one object per request (mqttctl apply splits files)", n)
		return nil, errs
	}
	return Decode(body)
}

func yamlKind(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case string:
		return "string"
	case int, int64, uint64, float64:
		return "number"
	case bool:
		return "boolean"
	}
	return "scalar"
}

var strictErrRE = regexp.MustCompile(`^(?:json: )?(unknown|duplicate) field "(.*)"$`)

// Decode reads one MqttCluster from YAML or JSON, strictly: an unknown or
// duplicate field is an error naming its path, and so is a value of the
// wrong type. It returns the object decoded so far with every such error,
// so callers can go on to validate the rest and report all at once. A
// document that is not YAML at all returns a nil object.
func Decode(doc []byte) (*MqttCluster, ErrorList) {
	js, errs := toJSON(doc)
	if js == nil {
		return nil, errs
	}
	obj := &MqttCluster{}
	strictInto(js, obj, &errs)
	return obj, errs
}

// toJSON checks a YAML or JSON document (size, syntax, duplicate keys)
// and converts it; nil when it is not YAML at all.
func toJSON(doc []byte) ([]byte, ErrorList) {
	var errs ErrorList
	if len(doc) > MaxDocumentBytes {
		errs.add("", ReasonSyntax, "document is larger than %d bytes", MaxDocumentBytes)
		return nil, errs
	}
	// Duplicate keys, with their paths, before they are folded away.
	var tree yamlv2.MapSlice
	if err := yamlv2.Unmarshal(doc, &tree); err != nil {
		errs.add("", ReasonSyntax, "%s", cleanYAMLError(err))
		return nil, errs
	}
	findDuplicates(tree, "", &errs)

	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		errs.add("", ReasonSyntax, "%s", cleanYAMLError(err))
		return nil, errs
	}
	return js, errs
}

// strictInto decodes JSON into obj strictly, adding every unknown,
// duplicate or mistyped field to errs with its path.
func strictInto(js []byte, obj any, errs *ErrorList) {
	strict, err := sigsjson.UnmarshalStrict(js, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	for _, se := range strict {
		m := strictErrRE.FindStringSubmatch(se.Error())
		if m == nil {
			errs.add("", ReasonInvalid, "%s", se.Error())
			continue
		}
		if m[1] == "duplicate" {
			if !errs.has(m[2], ReasonDuplicate) {
				errs.add(m[2], ReasonDuplicate, "duplicate field")
			}
			continue
		}
		errs.add(m[2], ReasonUnknown, "unknown field")
	}
	if err != nil {
		if m := typeErrRE.FindStringSubmatch(err.Error()); m != nil {
			want := jsonTypeName(m[4])
			switch {
			case m[1] == "number" && (want == "integer" || want == "number"):
				errs.add(m[3], ReasonInvalid, "%s is not a valid %s here (out of range, or not a whole number)", m[2], want)
			default:
				errs.add(m[3], ReasonTypeInvalid, "expected %s, got %s", want, m[1])
			}
		} else {
			errs.add("", ReasonSyntax, "%s", err.Error())
		}
	}
}

func (l ErrorList) has(field, reason string) bool {
	for _, e := range l {
		if e.Field == field && e.Reason == reason {
			return true
		}
	}
	return false
}

// typeErrRE reads encoding/json's type error: what was found (and, for a
// number, its text), the field path, and the Go type (never shown).
var typeErrRE = regexp.MustCompile(`cannot unmarshal (\w+)(?: (\S+))? into Go struct field \w+\.(\S+) of type \*?(\S+)$`)

func jsonTypeName(goType string) string {
	switch strings.TrimPrefix(goType, "api.") {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "integer"
	case "float32", "float64":
		return "number"
	case "bool":
		return "boolean"
	case "string":
		return "string"
	case "Duration", "Quantity", "BalanceMode":
		return "string"
	}
	if strings.HasPrefix(goType, "[]") {
		return "list"
	}
	if strings.HasPrefix(goType, "map[") {
		return "object"
	}
	return "object"
}

func findDuplicates(node any, path string, errs *ErrorList) {
	switch n := node.(type) {
	case yamlv2.MapSlice:
		seen := map[string]bool{}
		for _, item := range n {
			key := fmt.Sprint(item.Key)
			p := key
			if path != "" {
				p = path + "." + key
			}
			if seen[key] {
				if !errs.has(p, ReasonDuplicate) {
					errs.add(p, ReasonDuplicate, "duplicate field")
				}
			}
			seen[key] = true
			findDuplicates(item.Value, p, errs)
		}
	case []any:
		for i, v := range n {
			findDuplicates(v, path+"["+strconv.Itoa(i)+"]", errs)
		}
	}
}

func cleanYAMLError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "error converting YAML to JSON: ")
	s = strings.TrimPrefix(s, "yaml: ")
	return s
}
