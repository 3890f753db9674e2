package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// The CLI's configuration file, as kubectl's kubeconfig: named contexts
// (an operator API's servers, its CA and a token file) and the current
// one. make up writes it; flags and environment variables win over it.
const (
	configAPIVersion = "mqttctl/v1"
	configKind       = "Config"
	defaultServer    = "https://127.0.0.1:7950"
)

type fileConfig struct {
	APIVersion     string       `json:"apiVersion"`
	Kind           string       `json:"kind"`
	CurrentContext string       `json:"current-context,omitempty"`
	Contexts       []cliContext `json:"contexts"`
}

// cliContext is one operator API: every manager's address (the next is
// tried when one cannot be reached), the CA that verifies it and the file
// holding the token. Never the token itself: the file is not a secret.
type cliContext struct {
	Name      string   `json:"name"`
	Servers   []string `json:"servers"`
	CAFile    string   `json:"certificate-authority,omitempty"`
	TokenFile string   `json:"token-file,omitempty"`
}

// configPath is --config, else $MQTTCTL_CONFIG, else
// $XDG_CONFIG_HOME/mqttctl/config, else ~/.config/mqttctl/config.
func (c *cli) configPath() (string, error) {
	if c.configFile != "" {
		return c.configFile, nil
	}
	if p := os.Getenv("MQTTCTL_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no configuration directory (set MQTTCTL_CONFIG): %w", err)
	}
	return filepath.Join(dir, "mqttctl", "config"), nil
}

// loadConfig reads the configuration file; a missing file is an empty
// configuration. Relative paths in it are relative to its directory.
func (c *cli) loadConfig() (*fileConfig, string, error) {
	path, err := c.configPath()
	if err != nil {
		return nil, "", err
	}
	cfg := &fileConfig{APIVersion: configAPIVersion, Kind: configKind}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, path, nil
	}
	if err != nil {
		return nil, path, fmt.Errorf("read %s: %w", path, err)
	}
	if err := yaml.UnmarshalStrict(b, cfg); err != nil {
		return nil, path, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.APIVersion != configAPIVersion || cfg.Kind != configKind {
		return nil, path, fmt.Errorf("%s: apiVersion %q kind %q, want %s %s", path, cfg.APIVersion, cfg.Kind, configAPIVersion, configKind)
	}
	return cfg, path, nil
}

// save writes the file atomically, readable by its owner only.
func (cfg *fileConfig) save(path string) error {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (cfg *fileConfig) find(name string) *cliContext {
	for i := range cfg.Contexts {
		if cfg.Contexts[i].Name == name {
			return &cfg.Contexts[i]
		}
	}
	return nil
}

// context is the context a command uses: --context, else
// $MQTTCTL_CONTEXT, else the file's current one; nil when none is set.
func (c *cli) context() (*cliContext, error) {
	name := c.contextName
	if name == "" {
		name = os.Getenv("MQTTCTL_CONTEXT")
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = cfg.CurrentContext
		if name == "" {
			return nil, nil
		}
	}
	ctx := cfg.find(name)
	if ctx == nil {
		return nil, fmt.Errorf("context %q is not in %s (mqttctl config get-contexts)", name, path)
	}
	out := *ctx
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(filepath.Dir(path), p)
	}
	out.CAFile, out.TokenFile = abs(out.CAFile), abs(out.TokenFile)
	return &out, nil
}

// connection resolves where and how to reach the API: a flag given, else
// its environment variable, else the context's value, else the default.
func (c *cli) connection() (server, caFile, tokenFile, token string, err error) {
	server, caFile, tokenFile = c.server, c.caFile, c.tokenFile
	if server == "" {
		server = env("MQTTCTL_SERVERS", os.Getenv("MQTTCTL_SERVER"))
	}
	if caFile == "" {
		caFile = os.Getenv("MQTTCTL_CA_FILE")
	}
	if tokenFile == "" {
		tokenFile = os.Getenv("MQTTCTL_TOKEN_FILE")
	}
	token = os.Getenv("MQTTCTL_TOKEN")
	if server == "" || caFile == "" || (tokenFile == "" && token == "") {
		ctx, err := c.context()
		if err != nil {
			return "", "", "", "", err
		}
		if ctx != nil {
			if server == "" {
				server = strings.Join(ctx.Servers, ",")
			}
			if caFile == "" {
				caFile = ctx.CAFile
			}
			if tokenFile == "" && token == "" {
				tokenFile = ctx.TokenFile
			}
		}
	}
	if server == "" {
		server = defaultServer
	}
	return server, caFile, tokenFile, token, nil
}

func (c *cli) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "The CLI's contexts (like kubectl config): view, get-contexts, current-context, use-context, set-context, delete-context",
		Long: `mqttctl keeps named contexts in $MQTTCTL_CONFIG, or ~/.config/mqttctl/config:
each is an operator API (its servers, the CA that verifies them, the file holding
the token). Commands use the current context; --context NAME or $MQTTCTL_CONTEXT
picks another, and --server, --ca-file, --token-file and their environment
variables (MQTTCTL_SERVERS, MQTTCTL_CA_FILE, MQTTCTL_TOKEN_FILE, MQTTCTL_TOKEN)
win over it. make up writes the context of the Swarm it deploys to.`,
	}
	cmd.AddCommand(c.configViewCmd(), c.getContextsCmd(), c.currentContextCmd(), c.useContextCmd(), c.setContextCmd(), c.deleteContextCmd())
	return cmd
}

func (c *cli) configViewCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "view",
		Short: "Print the configuration file (it holds no secret: token files are named, not read)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, _, err := c.loadConfig()
			if err != nil {
				return err
			}
			b, err := yaml.Marshal(cfg)
			if err != nil {
				return err
			}
			_, err = c.out.Write(b)
			return err
		},
	}
}

func (c *cli) getContextsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get-contexts",
		Short: "List the contexts; * marks the current one",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, _, err := c.loadConfig()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CURRENT\tNAME\tSERVERS\tCA\tTOKEN FILE")
			for _, x := range cfg.Contexts {
				cur := ""
				if x.Name == cfg.CurrentContext {
					cur = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cur, x.Name, strings.Join(x.Servers, ","), orNone(x.CAFile), orNone(x.TokenFile))
			}
			return tw.Flush()
		},
	}
}

func (c *cli) currentContextCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "current-context",
		Short: "Print the current context's name",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, path, err := c.loadConfig()
			if err != nil {
				return err
			}
			if cfg.CurrentContext == "" {
				return fmt.Errorf("no current context in %s", path)
			}
			fmt.Fprintln(c.out, cfg.CurrentContext)
			return nil
		},
	}
}

func (c *cli) useContextCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "use-context NAME",
		Short: "Make NAME the current context",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return c.editContext(args[0], "switched to context %q", func(cfg *fileConfig) { cfg.CurrentContext = args[0] })
		},
	}
}

// editContext changes the file where context name exists (an error
// naming the file when it does not), saves it and says done.
func (c *cli) editContext(name, done string, edit func(*fileConfig)) error {
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.find(name) == nil {
		return fmt.Errorf("context %q is not in %s", name, path)
	}
	edit(cfg)
	if err := cfg.save(path); err != nil {
		return err
	}
	fmt.Fprintf(c.out, done+"\n", name)
	return nil
}

func (c *cli) setContextCmd() *cobra.Command {
	var use bool
	cmd := &cobra.Command{
		Use:   "set-context NAME [--server URL[,URL...]] [--ca-file FILE] [--token-file FILE] [--use]",
		Short: "Create or change a context: the flags given replace its values (paths are stored absolute)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if name == "" || strings.ContainsAny(name, " \t\n") {
				return fmt.Errorf("context name %q: must be non-empty, without spaces", name)
			}
			cfg, path, err := c.loadConfig()
			if err != nil {
				return err
			}
			ctx := cfg.find(name)
			if ctx == nil {
				cfg.Contexts = append(cfg.Contexts, cliContext{Name: name})
				ctx = &cfg.Contexts[len(cfg.Contexts)-1]
			}
			flags := cmd.Flags()
			if flags.Changed("server") {
				ctx.Servers = nil
				for _, s := range strings.Split(c.server, ",") {
					if s = strings.TrimSpace(s); s != "" {
						ctx.Servers = append(ctx.Servers, s)
					}
				}
			}
			for flag, dst := range map[string]*string{"ca-file": &ctx.CAFile, "token-file": &ctx.TokenFile} {
				if !flags.Changed(flag) {
					continue
				}
				v, _ := flags.GetString(flag)
				if v != "" {
					if v, err = filepath.Abs(v); err != nil {
						return err
					}
				}
				*dst = v
			}
			if len(ctx.Servers) == 0 {
				return fmt.Errorf("context %q: --server is required (the operator API's URL, or every manager's, comma-separated)", name)
			}
			if use || cfg.CurrentContext == "" {
				cfg.CurrentContext = name
			}
			slices.SortFunc(cfg.Contexts, func(a, b cliContext) int { return strings.Compare(a.Name, b.Name) })
			if err := cfg.save(path); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "context %q set in %s\n", name, path)
			return nil
		},
	}
	cmd.Flags().BoolVar(&use, "use", false, "also make it the current context")
	return cmd
}

func (c *cli) deleteContextCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete-context NAME",
		Short: "Remove a context (the current one too: then none is current)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return c.editContext(args[0], "context %q deleted", func(cfg *fileConfig) {
				cfg.Contexts = slices.DeleteFunc(cfg.Contexts, func(x cliContext) bool { return x.Name == args[0] })
				if cfg.CurrentContext == args[0] {
					cfg.CurrentContext = ""
				}
			})
		},
	}
}
