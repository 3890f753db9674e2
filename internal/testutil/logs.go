package testutil

import (
	"context"
	"os/exec"
	"time"
)

// ServiceLogs is `docker service logs --raw` of a service (extra flags
// after --raw), bounded to a minute: the docker CLI can keep streaming
// forever when one of the service's tasks was killed while it reads, and
// what it printed until then is what there is.
func ServiceLogs(service string, extra ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"service", "logs", "--raw"}, extra...)
	out, _ := exec.CommandContext(ctx, "docker", append(args, service)...).CombinedOutput()
	return string(out)
}
