package syncagent

import (
	"fmt"
	"net"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
)

// Push is one lsyncd sync block: a broker's data to one target.
type Push struct {
	Broker, Volume string
	TargetNode     string
	TargetAddr     string
}

// TargetURL is the rsync URL a push writes to.
func (p Push) TargetURL() string {
	return TargetURL(p.TargetAddr, p.Volume)
}

// TargetURL is the rsync daemon URL of a volume's data on a node: the
// module of that volume.
func TargetURL(addr, volume string) string {
	return fmt.Sprintf("rsync://%s@%s/%s/", datasync.RsyncUser, net.JoinHostPort(addr, strconv.Itoa(datasync.RsyncPort)), volume)
}

// Excluded are never synced: the agent's marker and Mosquitto's database
// while it is being written (it is renamed into place).
var Excluded = []string{"/" + datasync.ReadyMarker, "*.new"}

func luaString(s string) string { return strconv.Quote(s) }

// LsyncdConfig renders lsyncd's configuration for pushes: one sync block
// per broker and target. rsyncBinary records each run's outcome.
func LsyncdConfig(pushes []Push, volumesDir, passwordFile, rsyncBinary, statusFile string, delay time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "settings {\n  nodaemon = true,\n  insist = true,\n  statusFile = %s,\n  statusInterval = 5,\n  maxProcesses = 4,\n}\n", luaString(statusFile))
	ps := append([]Push(nil), pushes...)
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Volume != ps[j].Volume {
			return ps[i].Volume < ps[j].Volume
		}
		return ps[i].TargetNode < ps[j].TargetNode
	})
	var excl []string
	for _, e := range Excluded {
		excl = append(excl, luaString(e))
	}
	for _, p := range ps {
		src := path.Join(volumesDir, p.Volume, "_data") + "/"
		fmt.Fprintf(&b, `sync {
  default.rsync,
  source = %s,
  target = %s,
  delay = %g,
  exclude = { %s },
  rsync = {
    binary = %s,
    password_file = %s,
    archive = true,
    _extra = { "--numeric-ids", "--timeout=30" },
  },
}
`, luaString(src), luaString(p.TargetURL()), delay.Seconds(), strings.Join(excl, ", "), luaString(rsyncBinary), luaString(passwordFile))
	}
	return b.String()
}

// RsyncdConfig renders the rsync daemon's configuration: one module per
// broker volume of the cluster (volumes), named after it, chrooted into
// the volume's data directory — nothing else on the node is reachable —
// password protected, every transfer checked first by the agent (pre-xfer
// exec, which rsync runs before the chroot). The daemon reads the file
// again for every connection: a new broker's module is served with no
// restart. behindTunnel: the daemon listens on 127.0.0.1:RsyncLocalPort
// only, behind the agent's mutual-TLS tunnel, which passes each peer's
// address in a PROXY protocol header (the transfer check decides by it).
func RsyncdConfig(volumesDir, secretsFile, allowCmd string, behindTunnel bool, volumes []string) string {
	var b strings.Builder
	if behindTunnel {
		fmt.Fprintf(&b, "address = 127.0.0.1\nport = %d\nproxy protocol = yes\n", datasync.RsyncLocalPort)
	} else {
		fmt.Fprintf(&b, "port = %d\n", datasync.RsyncPort)
	}
	b.WriteString(`pid file = /run/mqtt-sync/rsyncd.pid
numeric ids = yes
uid = root
gid = root
max connections = 32
timeout = 60
reverse lookup = no
log file = /dev/null
`)
	vs := slices.Clone(volumes)
	slices.Sort(vs)
	for _, v := range slices.Compact(vs) {
		fmt.Fprintf(&b, `
[%s]
  path = %s
  use chroot = yes
  read only = no
  list = no
  auth users = %s
  secrets file = %s
  strict modes = yes
  pre-xfer exec = %s
`, v, path.Join(volumesDir, v, "_data"), datasync.RsyncUser, secretsFile, allowCmd)
	}
	return b.String()
}
