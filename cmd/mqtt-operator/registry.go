package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/docker/docker/api/types/registry"
)

// readRegistryAuth reads --registry-auth-file: one registry's credentials
// as Docker's API takes them ({"username", "password", "serveraddress"}),
// or {} for none. Its errors never quote the file's content.
func readRegistryAuth(path string) (registry.AuthConfig, error) {
	var auth registry.AuthConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return auth, fmt.Errorf("registry credentials: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&auth); err != nil {
		return registry.AuthConfig{}, fmt.Errorf("registry credentials in %s: not a JSON object with username, password and serveraddress (a Docker config.json is not accepted: give one registry's entry)", path)
	}
	if auth.Username != "" && auth.Password == "" {
		return registry.AuthConfig{}, fmt.Errorf("registry credentials in %s: username %q has no password", path, auth.Username)
	}
	if auth.Username != "" && auth.ServerAddress == "" {
		return registry.AuthConfig{}, fmt.Errorf("registry credentials in %s: serveraddress (the registry's host:port) is required", path)
	}
	return auth, nil
}
