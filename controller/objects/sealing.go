package objects

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// MigrateSealing seals, once per encryption key, the credentials records
// written in clear before the key was set or sealed before records were
// bound to their cluster's name, each logged by name; then it records that
// it ran, so that a plain record that appears later is refused (Degraded),
// never sealed as if it were the operator's own. It runs on the leader,
// after the barrier, before any reconcile; fence runs before each write.
func (x *Objects) MigrateSealing(fence func() error, log *slog.Logger) error {
	if x.Sealer == nil {
		return nil
	}
	if o := x.Store.Get(KindSealing, sealingName); o != nil {
		o, err := current(o)
		if err != nil {
			return err
		}
		var done struct{ KeyID string }
		if json.Unmarshal(o.Spec, &done) == nil && done.KeyID == x.Sealer.KeyID() {
			return nil
		}
	}
	objs, _ := x.Store.List(KindCredentials)
	var errs []error
	for _, o := range objs {
		o, err := current(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if credentials.Current(o.Spec) {
			continue
		}
		m, err := x.Sealer.Migrate(o.Name, o.Spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("credentials of %s: %w", o.Name, err))
			continue
		}
		b, err := x.Sealer.Encode(o.Name, m)
		if err != nil {
			errs = append(errs, fmt.Errorf("credentials of %s: %w", o.Name, err))
			continue
		}
		if err := fence(); err != nil {
			return err
		}
		v := o.ModifyIndex
		if _, _, err := x.apply(store.ApplyRequest{Kind: KindCredentials, Name: o.Name, Spec: b, ExpectVersion: &v}); err != nil {
			errs = append(errs, fmt.Errorf("store credentials of %s: %w", o.Name, err))
			continue
		}
		log.Warn("sealing migration: credentials sealed with the current key and bound to their cluster", "cluster", o.Name, "keyID", x.Sealer.KeyID())
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	spec, _ := json.Marshal(map[string]string{"keyID": x.Sealer.KeyID()})
	if _, _, err := x.apply(store.ApplyRequest{Kind: KindSealing, Name: sealingName, Spec: spec}); err != nil {
		return fmt.Errorf("record the sealing migration: %w", err)
	}
	log.Info("sealing migration done: credentials stored in clear are refused from now on", "keyID", x.Sealer.KeyID())
	return nil
}
