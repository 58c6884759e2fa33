package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// Output formats of -o/--output.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// globalOptions holds the persistent flags of the root command. Every
// subcommand gets a pointer to the same value; the fields are set when the
// command line is parsed.
type globalOptions struct {
	configFile string // --config
	output     string // -o/--output
	logLevel   string // --log-level (also overrides log.level via loadConfig)
}

// configPath is the configuration file to read: --config, else
// $TANDEM_CONFIG, else "" (none).
func (g *globalOptions) configPath() string {
	if g.configFile != "" {
		return g.configFile
	}
	return os.Getenv(envConfigFile)
}

// format returns the validated output format.
func (g *globalOptions) format() (string, error) {
	switch g.output {
	case outputTable, outputJSON:
		return g.output, nil
	default:
		return "", fmt.Errorf("--output: %q is not one of %s, %s", g.output, outputTable, outputJSON)
	}
}

// newRootCmd builds the whole command tree.
func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "tandem",
		Short: "Tandem: a replicated state machine on Raft, with Byzantine fault detection",
		Long: `tandem runs a Tandem node and administers Tandem clusters.

Configuration is layered, lowest precedence first: built-in defaults, the
YAML file named by --config (or $TANDEM_CONFIG), TANDEM_* environment
variables (e.g. TANDEM_RAFT_HEARTBEAT_TIMEOUT=2s, lists comma-separated),
and flags. Run "tandem config default" for every key.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Validate the global flags before any subcommand runs. A subcommand
		// that defines its own PersistentPreRunE must call g.format itself.
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if _, err := g.format(); err != nil {
				return err
			}
			if g.logLevel != "" {
				if _, err := parseLevel(g.logLevel); err != nil {
					return fmt.Errorf("--log-level: %w", err)
				}
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.configFile, "config", "", "configuration file (YAML); default $"+envConfigFile)
	pf.StringVarP(&g.output, "output", "o", outputTable, "output format: table or json")
	pf.StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn or error (overrides log.level)")

	root.AddCommand(
		newConfigCmd(g),
		newInitCmd(g),
		newCACmd(g),
		newCertCmd(g),
		newKeygenCmd(g),
	)
	addMoreCommands(root, g)
	return root
}

// parseLevel maps a log.level value to a slog level.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	default:
		return 0, fmt.Errorf("%q is not one of debug, info, warn, error", s)
	}
}

// writeJSON writes v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeTable writes a header and rows as aligned columns.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(header) > 0 {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// writeFields writes label/value pairs, one per line, aligned.
func writeFields(w io.Writer, pairs ...[2]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s:\t%s\n", p[0], p[1])
	}
	return tw.Flush()
}
