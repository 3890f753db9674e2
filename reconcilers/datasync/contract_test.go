package datasync

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckContract(t *testing.T) {
	has := func(names ...string) func(string) (string, error) {
		return func(p string) (string, error) {
			for _, n := range names {
				if n == p {
					return "/usr/bin/" + p, nil
				}
			}
			return "", errors.New("not found")
		}
	}
	if err := CheckContract(has("lsyncd", "rsync", "mqtt-sync-rsync")); err != nil {
		t.Fatal(err)
	}
	err := CheckContract(has("rsync"))
	if err == nil || !strings.HasPrefix(err.Error(), "image contract: no lsyncd, mqtt-sync-rsync in this image") {
		t.Fatalf("got %v", err)
	}
}
