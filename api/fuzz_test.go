package api

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse feeds parse+default+validate arbitrary bytes: it must not panic
// or hang, and whatever it accepts must survive a JSON round trip unchanged.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/*.yaml")
	more, _ := filepath.Glob("testdata/invalid/*.yaml")
	for _, p := range append(seeds, more...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range ParseAll(data, BuiltinDefaults()) {
			if r.Err != nil {
				if r.Object != nil {
					t.Fatalf("an error and an object: %v", r.Err)
				}
				continue
			}
			js, err := json.Marshal(r.Object)
			if err != nil {
				t.Fatalf("accepted object does not marshal: %v", err)
			}
			again, err := Parse(js, BuiltinDefaults())
			if err != nil {
				t.Fatalf("accepted object rejected after a round trip: %v\n%s", err, js)
			}
			if !reflect.DeepEqual(again, r.Object) {
				t.Fatalf("round trip changed the object:\n%s", js)
			}
		}
	})
}

// FuzzUser is FuzzParse for MqttUser documents (run in make fuzz too).
func FuzzUser(f *testing.F) {
	more, _ := filepath.Glob("testdata/invalid-users/*.yaml")
	for _, p := range append(more, "../examples/users.yaml") {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := ParseUser(data)
		if err != nil {
			if u != nil {
				t.Fatalf("an error and an object: %v", err)
			}
			return
		}
		js, err := json.Marshal(u)
		if err != nil {
			t.Fatalf("accepted user does not marshal: %v", err)
		}
		again, err := ParseUser(js)
		if err != nil {
			t.Fatalf("accepted user rejected after a round trip: %v\n%s", err, js)
		}
		if !reflect.DeepEqual(again, u) {
			t.Fatalf("round trip changed the user:\n%s", js)
		}
	})
}
