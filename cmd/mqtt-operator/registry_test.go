package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadRegistryAuth(t *testing.T) {
	const secret = "s3cret-value"
	for _, tc := range []struct {
		name, content, wantErr, wantUser string
	}{
		{name: "none", content: "{}"},
		{name: "one registry", content: `{"username":"mqtt","password":"` + secret + `","serveraddress":"10.0.0.5:5000"}`, wantUser: "mqtt"},
		{name: "config.json", content: `{"auths":{"10.0.0.5:5000":{"auth":"` + secret + `"}}}`, wantErr: "a Docker config.json is not accepted"},
		{name: "not json", content: "mqtt:" + secret, wantErr: "not a JSON object"},
		{name: "no password", content: `{"username":"mqtt","serveraddress":"r:5000"}`, wantErr: `username "mqtt" has no password`},
		{name: "no server", content: `{"username":"mqtt","password":"` + secret + `"}`, wantErr: "serveraddress"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "registry-auth")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			auth, err := readRegistryAuth(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("the error quotes the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if auth.Username != tc.wantUser {
				t.Fatalf("username %q, want %q", auth.Username, tc.wantUser)
			}
		})
	}
}
