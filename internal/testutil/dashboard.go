package testutil

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
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
