package testutil

import (
	"context"
	"os/exec"
	"strings"
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

// RunningLogs is the log of a service's running containers on this
// Docker host (a one-node Swarm), read with docker logs: fast and bounded,
// where Swarm's service log stream over a long task history can hang.
// extra flags go to docker logs (--timestamps, say).
func RunningLogs(service string, extra ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids, _ := exec.CommandContext(ctx, "docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+service).Output()
	var out []byte
	for _, id := range strings.Fields(string(ids)) {
		b, _ := exec.CommandContext(ctx, "docker", append(append([]string{"logs"}, extra...), id)...).CombinedOutput()
		out = append(out, b...)
	}
	return string(out)
}
