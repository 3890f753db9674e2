package testutil

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// Panel is one panel of the Grafana dashboard, as the tests read it:
// Requires names what it needs to have series ("sync": spec.sync on two
// nodes or more).
type Panel struct {
	Title    string
	Requires string `json:"mqttRequires"`
	Targets  []struct{ Expr string }
}

// DashboardPanels reads charts/monitoring/grafana-dashboard.json from the
// repository root root.
func DashboardPanels(t testing.TB, root string) []Panel {
	t.Helper()
	var dash struct{ Panels []Panel }
	b, err := os.ReadFile(filepath.Join(root, "charts", "monitoring", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	return dash.Panels
}

// RecordingRules reads charts/monitoring/rules.yml: each recorded series'
// name and the expression that computes it.
func RecordingRules(t testing.TB, root string) map[string]string {
	t.Helper()
	var rules struct {
		Groups []struct {
			Rules []struct{ Record, Expr string }
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "charts", "monitoring", "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("rules.yml: %v", err)
	}
	out := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out[r.Record] = r.Expr
			}
		}
	}
	return out
}
