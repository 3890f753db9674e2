package crds

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

const crdFile, userCRDFile = "mqtt.swarm_mqttclusters.yaml", "mqtt.swarm_mqttusers.yaml"

// TestCRDIsNotStale regenerates the CRD from the Go types and compares.
func TestCRDIsNotStale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds controller-gen; run without -short")
	}
	out := t.TempDir()
	cmd := exec.Command("go", "tool", "controller-gen", "crd", "paths=./api/...", "output:crd:dir="+out)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, b)
	}
	for _, f := range []string{crdFile, userCRDFile} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("crds/%s is stale: run `make generate` and commit the result", f)
		}
	}
}

type crd struct {
	Spec struct {
		Versions []struct {
			Name   string `json:"name"`
			Schema struct {
				OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

// strict marks every object schema that lists properties as closed, which is
// what Kubernetes does for a structural schema with fieldValidation=Strict.
func strict(node any) {
	switch n := node.(type) {
	case map[string]any:
		if _, ok := n["properties"]; ok {
			if _, set := n["additionalProperties"]; !set {
				n["additionalProperties"] = false
			}
		}
		for _, v := range n {
			strict(v)
		}
	case []any:
		for _, v := range n {
			strict(v)
		}
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema { return compileSchemaOf(t, crdFile) }

func compileSchemaOf(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c crd
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Spec.Versions) != 1 || c.Spec.Versions[0].Name != api.Version {
		t.Fatalf("CRD versions: %+v", c.Spec.Versions)
	}
	schema := c.Spec.Versions[0].Schema.OpenAPIV3Schema
	strict(schema)
	// Round-trip through JSON so numbers have the types the compiler wants.
	js, _ := json.Marshal(schema)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	comp := jsonschema.NewCompiler()
	if err := comp.AddResource("crd.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := comp.Compile("crd.json")
	if err != nil {
		t.Fatalf("compile CRD schema: %v", err)
	}
	return s
}

func instance(t *testing.T, doc []byte) any {
	t.Helper()
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSchemaAgreesWithValidation runs the samples and every invalid case of
// package api through both the CRD's JSON schema and api.Parse.
func TestSchemaAgreesWithValidation(t *testing.T) {
	t.Parallel()
	schema := compileSchema(t)

	samples, _ := filepath.Glob("../examples/*.yaml")
	if len(samples) == 0 {
		t.Fatal("no samples")
	}
	for _, f := range samples {
		data, _ := os.ReadFile(f)
		for i, doc := range api.SplitDocuments(data) {
			if api.KindOf(doc) == api.KindMqttUser {
				continue // TestUserSchemaAgreesWithValidation
			}
			if _, err := api.Parse(doc, api.BuiltinDefaults()); err != nil {
				t.Errorf("%s #%d: runtime rejects a sample: %v", f, i+1, err)
			}
			if err := schema.Validate(instance(t, doc)); err != nil {
				t.Errorf("%s #%d: schema rejects a sample: %v", f, i+1, err)
			}
			// A stored (defaulted) object is valid against the schema too.
			obj, _ := api.Parse(doc, api.BuiltinDefaults())
			js, _ := json.Marshal(obj)
			if err := schema.Validate(instance(t, js)); err != nil {
				t.Errorf("%s #%d: schema rejects the defaulted object: %v", f, i+1, err)
			}
		}
	}

	// The schema header of each invalid case says what the CRD does with it:
	//   reject  - the JSON schema rejects it;
	//   cel     - a cross-field rule (x-kubernetes-validations, CEL) rejects it
	//             in Kubernetes; a JSON-schema validator does not run CEL;
	//   meta    - metadata, which Kubernetes validates itself;
	//   server  - apiVersion/kind, which Kubernetes routes on;
	//   parser  - duplicate keys, caught while parsing, before any schema;
	//   runtime - a bound on a parsed value (duration, quantity) that the
	//             pattern cannot express.
	// Every case must be rejected by api.Parse; the schema must do exactly
	// what the header says.
	files, _ := filepath.Glob("../api/testdata/invalid/*.yaml")
	if len(files) < 30 {
		t.Fatalf("want at least 30 invalid cases, have %d", len(files))
	}
	celRules := 0
	raw, _ := os.ReadFile(crdFile)
	celRules = strings.Count(string(raw), "rule:")
	for _, f := range files {
		doc, _ := os.ReadFile(f)
		mode := ""
		for _, line := range strings.Split(string(doc), "\n") {
			if v, ok := strings.CutPrefix(line, "# schema: "); ok {
				mode = v
			}
		}
		name := filepath.Base(f)
		if _, err := api.Parse(doc, api.BuiltinDefaults()); err == nil {
			t.Errorf("%s: runtime accepts an invalid case", name)
		}
		err := schema.Validate(instance(t, doc))
		switch mode {
		case "reject":
			if err == nil {
				t.Errorf("%s: schema accepts what runtime validation rejects", name)
			}
		case "cel", "meta", "server", "parser", "runtime":
			if err != nil {
				t.Errorf("%s: marked %q but the schema rejects it (%v): update the header", name, mode, err)
			}
			if mode == "cel" && celRules < 3 {
				t.Errorf("%s: marked cel but the CRD has %d CEL rules", name, celRules)
			}
		default:
			t.Errorf("%s: unknown schema mode %q", name, mode)
		}
	}
}

// TestUserSchemaAgreesWithValidation: the MqttUser samples pass both the
// user CRD's schema and api.ParseUser; every invalid user case is
// rejected by ParseUser, and by the schema exactly when its header says.
func TestUserSchemaAgreesWithValidation(t *testing.T) {
	schema := compileSchemaOf(t, userCRDFile)
	samples, _ := filepath.Glob("../examples/*.yaml")
	users := 0
	for _, f := range samples {
		data, _ := os.ReadFile(f)
		for i, doc := range api.SplitDocuments(data) {
			if api.KindOf(doc) != api.KindMqttUser {
				continue
			}
			users++
			u, err := api.ParseUser(doc)
			if err != nil {
				t.Errorf("%s #%d: runtime rejects a sample: %v", f, i+1, err)
				continue
			}
			if err := schema.Validate(instance(t, doc)); err != nil {
				t.Errorf("%s #%d: schema rejects a sample: %v", f, i+1, err)
			}
			js, _ := json.Marshal(u)
			if err := schema.Validate(instance(t, js)); err != nil {
				t.Errorf("%s #%d: schema rejects the defaulted user: %v", f, i+1, err)
			}
		}
	}
	if users == 0 {
		t.Fatal("no MqttUser sample in examples/")
	}
	files, _ := filepath.Glob("../api/testdata/invalid-users/*.yaml")
	if len(files) < 5 {
		t.Fatalf("want at least 5 invalid user cases, have %d", len(files))
	}
	for _, f := range files {
		doc, _ := os.ReadFile(f)
		mode := ""
		for _, line := range strings.Split(string(doc), "\n") {
			if v, ok := strings.CutPrefix(line, "# schema: "); ok {
				mode = v
			}
		}
		if _, err := api.ParseUser(doc); err == nil {
			t.Errorf("%s: runtime accepts an invalid user", filepath.Base(f))
		}
		err := schema.Validate(instance(t, doc))
		switch mode {
		case "reject":
			if err == nil {
				t.Errorf("%s: schema accepts what runtime validation rejects", filepath.Base(f))
			}
		case "runtime", "meta", "server":
			if err != nil {
				t.Errorf("%s: marked %q but the schema rejects it (%v)", filepath.Base(f), mode, err)
			}
		default:
			t.Errorf("%s: unknown schema mode %q", filepath.Base(f), mode)
		}
	}
}
