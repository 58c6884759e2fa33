package main

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/config"
)

func newConfigCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check, show and generate node configuration",
	}
	cmd.AddCommand(newConfigCheckCmd(g), newConfigShowCmd(g), newConfigDefaultCmd(g))
	return cmd
}

func newConfigCheckCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check [file]",
		Short: "Validate a configuration file (with the environment and flags applied)",
		Long: `Validate a configuration file as "tandem serve" would read it: the file,
overridden by TANDEM_* environment variables and flags. Prints "config OK"
or every problem, and exits non-zero when there is one.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := g.configPath()
			if len(args) == 1 {
				file = args[0]
			}
			if file == "" {
				return errors.New("config check: no file given; pass it as an argument or with --config")
			}
			format, err := g.format()
			if err != nil {
				return err
			}
			_, _, err = loadConfig(file, cmd.Flags())
			if format == outputJSON {
				out := struct {
					File     string   `json:"file"`
					OK       bool     `json:"ok"`
					Problems []string `json:"problems,omitempty"`
				}{File: file, OK: err == nil}
				var cp *configProblemsError
				switch {
				case errors.As(err, &cp):
					for _, p := range cp.problems {
						out.Problems = append(out.Problems, p.Msg)
					}
				case err != nil:
					out.Problems = []string{err.Error()}
				}
				if werr := writeJSON(cmd.OutOrStdout(), out); werr != nil {
					return werr
				}
			}
			if err != nil {
				return err
			}
			if format == outputTable {
				fmt.Fprintf(cmd.OutOrStdout(), "config OK: %s\n", file)
			}
			return nil
		},
	}
	bindConfigFlags(cmd.Flags())
	return cmd
}

// configEntry is one row of `config show`.
type configEntry struct {
	Key    string `json:"key"`
	Value  any    `json:"value"`
	Source string `json:"source"`
}

func newConfigShowCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the effective configuration and where each value comes from",
		Long: `Show every key of the effective configuration (defaults < --config file <
environment < flags) with the source of its value. A configuration that does
not validate is still shown; its problems are printed to stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := g.format()
			if err != nil {
				return err
			}
			cfg, sources, err := loadConfig(g.configPath(), cmd.Flags())
			var cp *configProblemsError
			if err != nil && !errors.As(err, &cp) {
				return err
			}
			var entries []configEntry
			for _, k := range config.Keys() {
				p, _ := cfg.Field(k.Name)
				val := reflect.ValueOf(p).Elem().Interface()
				if d, ok := val.(time.Duration); ok {
					val = d.String()
				}
				entries = append(entries, configEntry{Key: k.Name, Value: val, Source: sources[k.Name]})
			}
			if format == outputJSON {
				if err := writeJSON(cmd.OutOrStdout(), entries); err != nil {
					return err
				}
			} else {
				rows := make([][]string, 0, len(entries))
				for _, e := range entries {
					s, _ := cfg.Format(e.Key)
					if s == "" {
						s = "-"
					}
					rows = append(rows, []string{e.Key, s, e.Source})
				}
				if err := writeTable(cmd.OutOrStdout(), []string{"KEY", "VALUE", "SOURCE"}, rows); err != nil {
					return err
				}
			}
			if cp != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %v\n", cp)
			}
			return nil
		},
	}
	bindConfigFlags(cmd.Flags())
	return cmd
}

func newConfigDefaultCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "default",
		Short: "Print a configuration file with every key at its default, commented",
		Long: `Print a YAML configuration file with every key at its default and a comment
describing it. With -o json, print the key reference instead: name, type,
default, environment variable and description of every key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := g.format()
			if err != nil {
				return err
			}
			if format == outputTable {
				_, err := fmt.Fprint(cmd.OutOrStdout(), config.SampleYAML())
				return err
			}
			type keyDoc struct {
				Key         string `json:"key"`
				Type        string `json:"type"`
				Default     string `json:"default"`
				Env         string `json:"env"`
				Description string `json:"description"`
			}
			var docs []keyDoc
			for _, k := range config.Keys() {
				docs = append(docs, keyDoc{k.Name, k.Type, k.Default, config.EnvName(k.Name), k.Description})
			}
			return writeJSON(cmd.OutOrStdout(), docs)
		},
	}
}
