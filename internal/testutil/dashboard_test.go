package testutil

import (
	"regexp"
	"testing"
)

// TestDashboardReadsRecordedSeries: every recorded series a panel queries
// is defined in rules.yml (a panel on a series nothing records is blank
// forever, with no error anywhere).
func TestDashboardReadsRecordedSeries(t *testing.T) {
	rules := RecordingRules(t, "../..")
	if len(rules) == 0 {
		t.Fatal("rules.yml records nothing")
	}
	recorded := regexp.MustCompile(`mqtt_[a-z_]+:[a-z_0-9:]+`)
	used := 0
	for _, p := range DashboardPanels(t, "../..") {
		for _, tg := range p.Targets {
			for _, r := range recorded.FindAllString(tg.Expr, -1) {
				used++
				if rules[r] == "" {
					t.Errorf("panel %q queries %s, which rules.yml does not record", p.Title, r)
				}
			}
		}
	}
	if used == 0 {
		t.Error("no panel reads a recorded series")
	}
}
