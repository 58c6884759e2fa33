package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/internal/benchplot"
)

// newBenchPlotCmd renders `bench write -o json` results as an HTML page.
func newBenchPlotCmd(_ *clientEnv) *cobra.Command {
	var out, title, note string
	cmd := &cobra.Command{
		Use:   "plot FILE...",
		Short: "Render `bench write -o json` results as an HTML page of charts",
		Long: `plot reads the JSON objects that "tandem bench write -o json" printed (one or
more per file, "-" for standard input), groups them by cluster (for example
"local 4-node cft" and "local 4-node bft") and draws writes/s and latency
against the number of clients, one line per cluster, as inline SVG.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var results []benchWriteResult
			for _, a := range args {
				var data []byte
				var err error
				if a == "-" {
					data, err = io.ReadAll(cmd.InOrStdin())
				} else {
					data, err = os.ReadFile(a)
				}
				if err != nil {
					return fmt.Errorf("reading %s: %w", a, err)
				}
				dec := json.NewDecoder(bytes.NewReader(data))
				for {
					var r benchWriteResult
					if err := dec.Decode(&r); errors.Is(err, io.EOF) {
						break
					} else if err != nil {
						return fmt.Errorf("%s: not bench write JSON: %w", a, err)
					}
					results = append(results, r)
				}
			}
			if len(results) == 0 {
				return errors.New("no results to plot")
			}
			w := cmd.OutOrStdout()
			if out != "" {
				f, err := os.Create(out)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			return benchplot.Page(w, title, note, writeCharts(results))
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the page to this file (default standard output)")
	cmd.Flags().StringVar(&title, "title", "Tandem write benchmark", "page title")
	cmd.Flags().StringVar(&note, "note", "", "a sentence under the title: machine, date, command")
	return cmd
}

func writeCharts(rs []benchWriteResult) []benchplot.Chart {
	var clusters []string
	for _, r := range rs {
		if !slices.Contains(clusters, r.Cluster) {
			clusters = append(clusters, r.Cluster)
		}
	}
	tput := benchplot.Chart{Title: "Committed writes/s", XLabel: "clients", YLabel: "writes/s", LogX: true}
	p50 := benchplot.Chart{Title: "Write latency p50 (ms)", XLabel: "clients", YLabel: "ms", LogX: true}
	p99 := benchplot.Chart{Title: "Write latency p99 (ms)", XLabel: "clients", YLabel: "ms", LogX: true}
	for _, c := range clusters {
		var a, b, d benchplot.Series
		a.Label, b.Label, d.Label = c, c, c
		for _, r := range rs {
			if r.Cluster != c {
				continue
			}
			x := float64(r.Clients)
			a.Points = append(a.Points, benchplot.Point{X: x, Y: r.WritesPerSec})
			b.Points = append(b.Points, benchplot.Point{X: x, Y: r.P50Millis})
			d.Points = append(d.Points, benchplot.Point{X: x, Y: r.P99Millis})
		}
		tput.Series, p50.Series, p99.Series = append(tput.Series, a), append(p50.Series, b), append(p99.Series, d)
	}
	return []benchplot.Chart{tput, p50, p99}
}
