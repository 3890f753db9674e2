package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
)

var version = "dev"

// cli holds what every command shares.
type cli struct {
	in          io.Reader
	out, errOut io.Writer
	server      string
	tokenFile   string
	caFile      string
	insecure    bool
	timeout     time.Duration
	now         func() time.Time
	brokerImage string
	lbImage     string
	configFile  string
	contextName string
}

// Main runs mqttctl and returns its exit code: 0 success, 1 invalid input
// or a failed request.
func Main(args []string, in io.Reader, out, errOut io.Writer) int {
	c := &cli{in: in, out: out, errOut: errOut, now: time.Now}
	return c.run(args)
}

// run executes one command line and returns the exit status: 0, 1 on
// failure, or the status an exitError carries (diff: 1 changes, 2 error).
func (c *cli) run(args []string) int {
	root := c.root()
	root.SetArgs(args)
	root.SetIn(c.in)
	root.SetOut(c.out)
	root.SetErr(c.errOut)
	if err := root.Execute(); err != nil {
		var silent silentError
		if !errors.As(err, &silent) {
			fmt.Fprintln(c.errOut, "error:", describeError(err))
		}
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// silentError: the command already printed why it failed.
type silentError struct{ error }

func describeError(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Message
	}
	return err.Error()
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (c *cli) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "mqttctl",
		Short:         "Manage MQTT clusters on Docker Swarm through the swarm-mqtt-operator API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.server, "server", "", "operator API URL, or a comma-separated list (every manager's: the next is tried when one cannot be reached) (env MQTTCTL_SERVERS, MQTTCTL_SERVER; else the context's; else "+defaultServer+")")
	pf.StringVar(&c.tokenFile, "token-file", "", "file holding the API token (env MQTTCTL_TOKEN_FILE; or the token itself in MQTTCTL_TOKEN; else the context's)")
	pf.StringVar(&c.caFile, "ca-file", "", "CA certificate to verify an HTTPS API (env MQTTCTL_CA_FILE; else the context's)")
	pf.StringVar(&c.contextName, "context", "", "the context to use (env MQTTCTL_CONTEXT; else the current one: mqttctl config)")
	pf.StringVar(&c.configFile, "config", "", "the configuration file (env MQTTCTL_CONFIG; else ~/.config/mqttctl/config)")
	pf.BoolVar(&c.insecure, "insecure-skip-tls-verify", false, "do not verify the API's TLS certificate")
	pf.DurationVar(&c.timeout, "request-timeout", 30*time.Second, "timeout of each API request")
	root.AddCommand(c.applyCmd(), c.rotatePasswordCmd(), c.diffCmd(), c.approveCmd(), c.eventsCmd(), c.gitSyncCmd(), c.getCmd(), c.describeCmd(), c.deleteCmd(), c.validateCmd(), c.waitCmd(), c.certificateCmd(), c.leaderCmd(), c.peersCmd(), c.backupCmd(), c.versionCmd(), c.configCmd())
	return root
}

func (c *cli) client() (*client.Client, error) {
	server, caFile, tokenFile, tok, err := c.connection()
	if err != nil {
		return nil, err
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	return client.New(client.Options{Server: server, Token: tok, CAFile: caFile, Insecure: c.insecure, Timeout: c.timeout})
}

// document is one YAML or JSON document read from a file, dir or stdin.
type document struct {
	source string
	index  int
	data   []byte
}

func (d document) String() string { return fmt.Sprintf("%s#%d", d.source, d.index) }

// readDocuments reads -f arguments: files, directories (their .yaml, .yml
// and .json files, recursively, in name order) and "-" for stdin.
func (c *cli) readDocuments(paths []string) ([]document, error) {
	if len(paths) == 0 {
		return nil, errors.New("-f is required (a file, a directory or - for stdin)")
	}
	var docs []document
	add := func(source string, data []byte) {
		for i, d := range api.SplitDocuments(data) {
			docs = append(docs, document{source: source, index: i + 1, data: d})
		}
	}
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(io.LimitReader(c.in, 64<<20))
			if err != nil {
				return nil, fmt.Errorf("read stdin: %w", err)
			}
			add("stdin", data)
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			add(p, data)
			continue
		}
		var files []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				if !d.IsDir() {
					files = append(files, path)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			add(f, data)
		}
	}
	if len(docs) == 0 {
		return nil, errors.New("no documents found")
	}
	return docs, nil
}

// validateAll parses every document offline (an MqttCluster, or an
// MqttUser when its kind says so) and prints each problem. It returns the
// parsed objects only if all are valid.
func (c *cli) validateAll(docs []document) ([]api.Object, error) {
	defaults := api.Defaults{BrokerImage: c.brokerImage, LoadBalancerImage: c.lbImage}
	var objs []api.Object
	bad := 0
	seen := map[string]string{}
	for _, d := range docs {
		var o api.Object
		if api.KindOf(d.data) == api.KindMqttUser {
			o.User, o.Err = api.ParseUser(d.data)
		} else {
			o.Cluster, o.Err = api.Parse(d.data, defaults)
		}
		if o.Err != nil {
			bad++
			fmt.Fprintf(c.errOut, "%s: %v\n", d, o.Err)
			continue
		}
		if prev, dup := seen[o.Name()]; dup {
			bad++
			fmt.Fprintf(c.errOut, "%s: %s is also defined in %s\n", d, o.Name(), prev)
			continue
		}
		seen[o.Name()] = d.String()
		o.Index = len(objs)
		objs = append(objs, o)
	}
	if bad > 0 {
		return nil, silentError{fmt.Errorf("%d of %d documents invalid", bad, len(docs))}
	}
	return objs, nil
}

// clustersFirst orders documents and their objects so every cluster is
// applied before the users that name it.
func clustersFirst(docs []document, objs []api.Object) ([]document, []api.Object) {
	var d2 []document
	var o2 []api.Object
	for _, users := range []bool{false, true} {
		for i, o := range objs {
			if (o.User != nil) == users {
				d2, o2 = append(d2, docs[i]), append(o2, o)
			}
		}
	}
	return d2, o2
}

func (c *cli) applyCmd() *cobra.Command {
	var files []string
	var wait, prune bool
	var selector string
	var wo waitOpts
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [--wait [--timeout=5m]] [--prune -l SELECTOR]",
		Short: "Create or update clusters from files; every document is validated before any is sent",
		Long: "Create or update clusters from files; every document is validated before any is sent.\n\n" +
			"--wait follows each applied cluster until it is Ready (as mqttctl wait). --prune -l SELECTOR\n" +
			"deletes the clusters with the selector's labels that are not in the files (never without -l);\n" +
			"with -l, documents whose labels the selector does not match are skipped.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if prune && selector == "" {
				return errors.New("--prune needs -l SELECTOR: clusters are never pruned without one")
			}
			var sel labels.Selector
			if selector != "" {
				var err error
				if sel, err = labels.Parse(selector); err != nil {
					return fmt.Errorf("-l %q: %w", selector, err)
				}
			}
			docs, err := c.readDocuments(files)
			if err != nil {
				return err
			}
			// All or nothing on input: nothing is sent unless every
			// document is valid.
			objs, err := c.validateAll(docs)
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			docs, objs = clustersFirst(docs, objs)
			inFiles := map[string]bool{}
			var applied []string
			err = c.each(len(docs), func(i int) (string, error) {
				inFiles[objs[i].Name()] = true
				if sel != nil && !sel.Matches(labels.Set(objectLabels(objs[i]))) {
					return fmt.Sprintf("%s skipped (its labels do not match -l %s)", objs[i].Name(), selector), nil
				}
				if objs[i].User != nil {
					res, err := cl.ApplyUser(cmd.Context(), docs[i].data)
					if err != nil {
						return "", fmt.Errorf("%s: %s", docs[i], describeError(err))
					}
					return fmt.Sprintf("mqttuser/%s %s", res.Object.Name, res.Result), nil
				}
				res, err := cl.Apply(cmd.Context(), docs[i].data)
				if err != nil {
					return "", fmt.Errorf("%s: %s", docs[i], describeError(err))
				}
				applied = append(applied, res.Object.Name)
				return fmt.Sprintf("mqttcluster/%s %s", res.Object.Name, res.Result), nil
			})
			if err != nil {
				return err
			}
			if prune {
				if err := c.prune(cmd, cl, selector, inFiles); err != nil {
					return err
				}
			}
			if wait {
				start := time.Now()
				for _, name := range applied {
					o := wo
					o.timeout = wo.timeout - time.Since(start)
					if o.timeout <= 0 {
						return fmt.Errorf("timed out after %s before waiting for mqttcluster/%s", wo.timeout, name)
					}
					if err := c.wait(cmd.Context(), name, o); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	filenameFlag(cmd, &files)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every applied cluster is Ready (exit 1 on timeout or Degraded)")
	cmd.Flags().BoolVar(&prune, "prune", false, "delete the clusters matching -l that are not in the files")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector: only matching documents are applied, and pruned among")
	wo.flags(cmd)
	return cmd
}

func (c *cli) validateCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "validate -f FILE|DIR|-",
		Short: "Check files offline with the server's own rules (no server needed)",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			docs, err := c.readDocuments(files)
			if err != nil {
				return err
			}
			objs, err := c.validateAll(docs)
			if err != nil {
				return err
			}
			for _, o := range objs {
				fmt.Fprintf(c.out, "%s valid\n", o.Name())
			}
			return nil
		},
	}
	filenameFlag(cmd, &files)
	cmd.Flags().StringVar(&c.brokerImage, "broker-image", api.DefaultBrokerImage, "broker image default to assume")
	cmd.Flags().StringVar(&c.lbImage, "lb-image", api.DefaultLoadBalancerImage, "load-balancer image default to assume")
	return cmd
}

func (c *cli) getCmd() *cobra.Command {
	var output, selector string
	cmd := &cobra.Command{
		Use:   "get [NAME] | get users [NAME] | get ca NAME | get credentials NAME|user/NAME",
		Short: "List clusters or users, or show one (-o yaml|json|wide); a cluster's CA certificate, a generated password",
		Example: `  mqttctl get -o wide
  mqttctl get users
  mqttctl get ca iot > ca.crt
  mqttctl get credentials iot
  mqttctl get credentials user/dashboard`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) >= 1 && (args[0] == "users" || args[0] == "user" || args[0] == "mqttusers") {
				return c.getUsers(cmd, args[1:], output, selector)
			}
			if len(args) == 2 {
				return c.getSecretPart(cmd, args[0], args[1], output)
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			var items []api.MqttCluster
			if len(args) == 1 {
				obj, err := cl.Get(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				items = []api.MqttCluster{*obj}
				if output == "yaml" || output == "json" {
					return c.print(output, obj)
				}
			} else {
				list, err := cl.List(cmd.Context(), selector)
				if err != nil {
					return err
				}
				items = list.Items
				if output == "yaml" || output == "json" {
					return c.print(output, list)
				}
			}
			if output == "name" {
				for _, o := range items {
					fmt.Fprintf(c.out, "mqttcluster/%s\n", o.Name)
				}
				return nil
			}
			if len(items) == 0 {
				fmt.Fprintln(c.errOut, "No clusters found.")
				return nil
			}
			c.table(items, output == "wide")
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "yaml, json, wide or name")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector, such as team=edge")
	return cmd
}

// getSecretPart prints a cluster's CA certificate (PEM) or its generated
// user (YAML by default).
func (c *cli) getSecretPart(cmd *cobra.Command, what, name, output string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	switch what {
	case "ca":
		ca, err := cl.CA(cmd.Context(), name)
		if err != nil {
			return err
		}
		if output == "yaml" || output == "json" {
			return c.print(output, ca)
		}
		_, err = io.WriteString(c.out, ca.Certificate)
		return err
	case "credentials":
		get := cl.Credentials
		if user, ok := userRef(name); ok {
			name, get = user, cl.UserCredentials
		}
		cr, err := get(cmd.Context(), name)
		if err != nil {
			return err
		}
		if output == "json" {
			return c.print(output, cr)
		}
		return c.print("yaml", cr)
	}
	return fmt.Errorf("unknown resource %q: use get NAME, get ca NAME or get credentials NAME", what)
}

func (c *cli) print(format string, v any) error {
	var b []byte
	var err error
	if format == "json" {
		b, err = json.MarshalIndent(v, "", "  ")
		b = append(b, '\n')
	} else {
		b, err = yaml.Marshal(v)
	}
	if err != nil {
		return err
	}
	_, err = c.out.Write(b)
	return err
}

func condition(o *api.MqttCluster, typ string) string {
	for _, cd := range o.Status.Conditions {
		if cd.Type == typ {
			return string(cd.Status)
		}
	}
	return "Unknown"
}

func ports(o *api.MqttCluster) string {
	p := o.Spec.LoadBalancer.Ports
	var out []string
	if p.MQTT != nil && *p.MQTT != 0 {
		out = append(out, fmt.Sprintf("%d/mqtt", *p.MQTT))
	}
	if p.MQTTS != nil && *p.MQTTS != 0 {
		out = append(out, fmt.Sprintf("%d/mqtts", *p.MQTTS))
	}
	return strings.Join(out, ",")
}

func deref(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

func (c *cli) table(items []api.MqttCluster, wide bool) {
	tw := tabwriter.NewWriter(c.out, 0, 8, 3, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "NAME\tREPLICAS\tREADY\tPORTS\tLB\tBALANCE\tBROKER IMAGE\tGENERATION\tOBSERVED\tAGE")
	} else {
		fmt.Fprintln(tw, "NAME\tREPLICAS\tREADY\tPORTS\tAGE")
	}
	for i := range items {
		o := &items[i]
		age := humanDuration(c.now().Sub(o.CreationTimestamp.Time))
		if wide {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\n", o.Name, api.Brokers(o), condition(o, api.ConditionReady), ports(o),
				deref(o.Spec.LoadBalancer.Replicas), o.Spec.LoadBalancer.Balance, o.Spec.Broker.Image, o.Generation, o.Status.ObservedGeneration, age)
		} else {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", o.Name, api.Brokers(o), condition(o, api.ConditionReady), ports(o), age)
		}
	}
	tw.Flush()
}

// humanDuration is kubectl's short age: 45s, 12m, 5h, 3d.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 3*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func (c *cli) describeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME | user/NAME",
		Short: "Show a cluster (or a user) in detail: spec, status, conditions, brokers",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if user, ok := userRef(args[0]); ok {
				u, err := cl.GetUser(cmd.Context(), user)
				if err != nil {
					return err
				}
				c.describeUser(u)
				return nil
			}
			o, err := cl.Get(cmd.Context(), strings.TrimPrefix(args[0], "mqttcluster/"))
			if err != nil {
				return err
			}
			c.describe(o)
			return nil
		},
	}
}

func (c *cli) describe(o *api.MqttCluster) {
	w := tabwriter.NewWriter(c.out, 0, 8, 2, ' ', 0)
	s := o.Spec
	p := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
	p("Name:", o.Name)
	var labels []string
	for k, v := range o.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	p("Labels:", strings.Join(labels, ","))
	p("UID:", o.UID)
	p("Generation:", o.Generation)
	p("Resource version:", o.ResourceVersion)
	p("Created:", o.CreationTimestamp.UTC().Format(time.RFC3339))
	p("Brokers:", fmt.Sprintf("%d x %s", api.Brokers(o), s.Broker.Image))
	switch {
	case s.Scaling.Auto():
		describeScaling(p, o)
	case s.Scaling.PerNode():
		next := "<none: the operator has not reported yet>"
		if st := o.Status.Scaling; st != nil {
			next = st.Next
		}
		p("  Scaling:", "PerNode: "+next)
	}
	p("  Persistence:", fmt.Sprintf("%v (autosave every %s)", s.Broker.Persistence.Enabled != nil && *s.Broker.Persistence.Enabled, s.Broker.Persistence.AutosaveInterval))
	p("  Resources:", fmt.Sprintf("memory=%s cpus=%s", orNone(string(s.Broker.Resources.Memory)), orNone(string(s.Broker.Resources.CPUs))))
	p("Load balancer:", fmt.Sprintf("%d x %s, balance %s, ports %s", deref(s.LoadBalancer.Replicas), s.LoadBalancer.Image, s.LoadBalancer.Balance, ports(o)))
	p("TLS:", fmt.Sprintf("dnsNames=%s ipAddresses=%s duration=%s renewBefore=%s", orNone(strings.Join(s.TLS.DNSNames, ",")), orNone(strings.Join(s.TLS.IPAddresses, ",")), s.TLS.Duration, s.TLS.RenewBefore))
	p("Auth:", fmt.Sprintf("allowAnonymous=%v passwordFileSecret=%s", s.Auth.AllowAnonymous != nil && *s.Auth.AllowAnonymous, orNone(s.Auth.PasswordFileSecret)))
	p("Sync:", fmt.Sprintf("enabled=%v delay=%s", s.Sync.Enabled != nil && *s.Sync.Enabled, s.Sync.Delay))
	p("Placement:", orNone(strings.Join(s.Placement.Constraints, "; ")))
	p("Observed generation:", o.Status.ObservedGeneration)
	p("Endpoints:", orNone(strings.Join(o.Status.Endpoints, ", ")))
	p("CA fingerprint:", orNone(o.Status.CAFingerprint))
	p("Hub:", orNone(o.Status.Hub))
	w.Flush()
	fmt.Fprintln(c.out, "Conditions:")
	if len(o.Status.Conditions) == 0 {
		fmt.Fprintln(c.out, "  <none: the operator has not reported yet>")
	}
	tw := tabwriter.NewWriter(c.out, 0, 8, 2, ' ', 0)
	for _, cd := range o.Status.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", cd.Type, cd.Status, cd.Reason, cd.Message)
	}
	tw.Flush()
	if len(o.Status.Brokers) > 0 {
		fmt.Fprintln(c.out, "Brokers:")
		for _, b := range o.Status.Brokers {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", b.Name, b.Node, b.State, bridgeLine(b.Bridge, c.now()))
		}
		tw.Flush()
	}
}

// describeScaling shows an Auto cluster's bounds, targets, figures and
// next decision.
func describeScaling(p func(string, any), o *api.MqttCluster) {
	sc := o.Spec.Scaling
	var targets []string
	if t := sc.ConnectionsPerBroker; t != nil {
		targets = append(targets, fmt.Sprintf("%d connections", *t))
	}
	if t := sc.MessagesPerSecondPerBroker; t != nil {
		targets = append(targets, fmt.Sprintf("%d messages/s", *t))
	}
	p("  Scaling:", fmt.Sprintf("Auto, %d..%d brokers, per broker %s, scale-down delay %s", deref(sc.Min), deref(sc.Max), strings.Join(targets, " and "), sc.ScaleDownDelay))
	st := o.Status.Scaling
	if st == nil {
		p("  Load:", "<none: the operator has not reported yet>")
		return
	}
	load := []string{}
	if st.Connections != nil {
		load = append(load, fmt.Sprintf("%d connections", *st.Connections))
	}
	if st.MessagesPerSecond != nil {
		load = append(load, fmt.Sprintf("%d messages/s", *st.MessagesPerSecond))
	}
	if len(load) == 0 {
		load = append(load, "unknown")
	}
	at := ""
	if st.ObservedTime != nil {
		at = " at " + st.ObservedTime.UTC().Format(time.RFC3339)
	}
	p("  Load:", fmt.Sprintf("%s%s: %d brokers wanted", strings.Join(load, ", "), at, st.Desired))
	last := "never"
	if st.LastScaleTime != nil {
		last = st.LastScaleTime.UTC().Format(time.RFC3339)
	}
	p("  Last scale:", last)
	p("  Next:", orNone(st.Next))
}

// bridgeLine shows a broker's place in the bridge tree.
func bridgeLine(b *api.BridgeStatus, now time.Time) string {
	switch {
	case b == nil:
		return "root"
	case b.Parent == "":
		return "bridge not connected yet"
	case b.Connected:
		return fmt.Sprintf("bridged to %s for %s", b.Parent, sinceStr(b.Since, now))
	default:
		return fmt.Sprintf("bridge to %s down for %s", b.Parent, sinceStr(b.Since, now))
	}
}

func sinceStr(t *metav1.Time, now time.Time) string {
	if t == nil {
		return "?"
	}
	return humanDuration(now.Sub(t.Time))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func (c *cli) deleteCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "delete NAME | user/NAME | -f FILE|DIR|-",
		Short: "Delete clusters (NAME) or users (user/NAME) by name, or by the files that define them",
		RunE: func(cmd *cobra.Command, args []string) error {
			names := args
			if len(files) > 0 {
				if len(args) > 0 {
					return errors.New("give names or -f, not both")
				}
				docs, err := c.readDocuments(files)
				if err != nil {
					return err
				}
				objs, err := c.validateAll(docs)
				if err != nil {
					return err
				}
				for _, o := range objs {
					names = append(names, o.Name())
				}
			}
			if len(names) == 0 {
				return errors.New("give a NAME or -f FILE")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			return c.each(len(names), func(i int) (string, error) {
				if user, ok := userRef(names[i]); ok {
					if err := cl.DeleteUser(cmd.Context(), user); err != nil {
						return "", errors.New(describeError(err))
					}
					return "mqttuser/" + user + " deleted", nil
				}
				name := strings.TrimPrefix(names[i], "mqttcluster/")
				if err := cl.Delete(cmd.Context(), name); err != nil {
					return "", errors.New(describeError(err))
				}
				return "mqttcluster/" + name + " deleted", nil
			})
		},
	}
	filenameFlag(cmd, &files)
	return cmd
}

func (c *cli) leaderCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "leader",
		Short: "Show the raft leader and this operator's raft progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			l, err := cl.Leader(cmd.Context())
			if err != nil {
				return err
			}
			if output != "" {
				return c.print(output, l)
			}
			w := tabwriter.NewWriter(c.out, 0, 8, 2, ' ', 0)
			fmt.Fprintf(w, "Leader:\t%s (%s)\n", orNone(l.LeaderID), orNone(l.LeaderAddress))
			fmt.Fprintf(w, "This node:\t%s (%s), %s\n", l.NodeID, l.NodeAddress, l.State)
			fmt.Fprintf(w, "Term:\t%d\n", l.Term)
			fmt.Fprintf(w, "Commit index:\t%d\n", l.CommitIndex)
			fmt.Fprintf(w, "Applied index:\t%d\n", l.AppliedIndex)
			if !l.LastContact.IsZero() {
				fmt.Fprintf(w, "Last contact:\t%s ago\n", time.Since(l.LastContact).Round(time.Millisecond))
			}
			fmt.Fprintf(w, "Server:\t%s\n", cl.Server())
			return w.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "yaml or json")
	return cmd
}

func (c *cli) peersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "List the raft configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			peers, err := cl.Peers(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(w, "ID\tADDRESS\tSUFFRAGE\tLEADER")
			for _, p := range peers {
				fmt.Fprintf(w, "%s\t%s\t%s\t%v\n", p.ID, p.Address, p.Suffrage, p.Leader)
			}
			return w.Flush()
		},
	}
}

func (c *cli) versionCmd() *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print mqttctl's version and the operator's (the server it reaches)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(c.out, "Client: mqttctl %s (API %s)\n", version, api.APIVersion)
			if clientOnly {
				return nil
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			v, err := cl.Version(cmd.Context())
			if err != nil {
				return fmt.Errorf("server version: %w", err)
			}
			storage := v.StorageVersion
			if storage == 0 {
				storage = 1 // an operator from before storage versions
			}
			fmt.Fprintf(c.out, "Server: mqtt-operator %s (API %s, storage version %d) at %s\n", v.Version, v.APIVersion, storage, cl.Server())
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "the client's version only (no request)")
	return cmd
}

func filenameFlag(cmd *cobra.Command, files *[]string) {
	cmd.Flags().StringArrayVarP(files, "filename", "f", nil, "file, directory or - (stdin); repeatable")
}

// each runs f for items 0..n-1, printing each success line on stdout and
// each error on stderr; it goes on past failures and fails if any did.
func (c *cli) each(n int, f func(i int) (string, error)) error {
	failed := 0
	for i := 0; i < n; i++ {
		line, err := f(i)
		if err != nil {
			failed++
			fmt.Fprintf(c.errOut, "error: %v\n", err)
			continue
		}
		fmt.Fprintln(c.out, line)
	}
	if failed > 0 {
		return silentError{fmt.Errorf("%d of %d failed", failed, n)}
	}
	return nil
}

func (c *cli) backupCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "backup [-f FILE]",
		Short: "Write a snapshot of every object (taken on the raft leader) to stdout or FILE",
		Long: "Write a snapshot of every object, taken on the raft leader after a barrier, for\n" +
			"mqtt-operator restore. It holds the clusters' private keys and passwords: keep it\n" +
			"as safe as the managers' disks.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			b, err := cl.Backup(cmd.Context())
			if err != nil {
				return err
			}
			if file == "" {
				_, err = c.out.Write(b)
				return err
			}
			return os.WriteFile(file, b, 0o600)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "write to FILE (mode 0600) instead of stdout")
	return cmd
}
