// Package benchplot renders benchmark results as a self-contained HTML page
// with inline SVG charts (no scripts, no external assets), so that docs/
// can carry a picture of the numbers next to the tables.
package benchplot

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Series is one line of a chart: a label and its points.
type Series struct {
	Label  string
	Points []Point
}

// Point is one measurement.
type Point struct {
	X float64
	Y float64
}

// Chart is one line chart.
type Chart struct {
	Title  string
	XLabel string
	YLabel string
	LogX   bool // x axis in log2 scale (client counts 16, 64, 256)
	Series []Series
}

// palette is used in order for the series.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}

// Page writes an HTML page with a heading, a note and the charts.
func Page(w io.Writer, title, note string, charts []Chart) error {
	var b strings.Builder
	fmt.Fprintf(&b, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>\n", html.EscapeString(title))
	b.WriteString("<style>body{font-family:sans-serif;margin:2em;max-width:60em}svg{margin:1em 0}</style></head><body>\n")
	fmt.Fprintf(&b, "<h1>%s</h1>\n<p>%s</p>\n", html.EscapeString(title), html.EscapeString(note))
	for _, c := range charts {
		b.WriteString(c.svg())
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

const (
	width, height          = 640, 360
	left, right, top, bott = 70, 150, 40, 50
)

func (c Chart) svg() string {
	minX, maxX, maxY := math.Inf(1), math.Inf(-1), 0.0
	for _, s := range c.Series {
		for _, p := range s.Points {
			x := c.x(p.X)
			minX, maxX = math.Min(minX, x), math.Max(maxX, x)
			maxY = math.Max(maxY, p.Y)
		}
	}
	if math.IsInf(minX, 0) {
		return ""
	}
	if maxX == minX {
		maxX = minX + 1
	}
	if maxY == 0 {
		maxY = 1
	}
	maxY *= 1.1
	pw, ph := float64(width-left-right), float64(height-top-bott)
	px := func(x float64) float64 { return left + (c.x(x)-minX)/(maxX-minX)*pw }
	py := func(y float64) float64 { return top + ph - y/maxY*ph }

	var b strings.Builder
	fmt.Fprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-size=\"12\">\n", width, height)
	fmt.Fprintf(&b, "<text x=\"%d\" y=\"20\" font-size=\"15\" font-weight=\"bold\">%s</text>\n", left, html.EscapeString(c.Title))
	fmt.Fprintf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", left, top+int(ph), left+int(pw), top+int(ph))
	fmt.Fprintf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", left, top, left, top+int(ph))
	for i := 0; i <= 4; i++ {
		y := maxY * float64(i) / 4
		fmt.Fprintf(&b, "<text x=\"%d\" y=\"%.0f\" text-anchor=\"end\">%s</text>\n", left-6, py(y)+4, short(y))
		fmt.Fprintf(&b, "<line x1=\"%d\" y1=\"%.0f\" x2=\"%d\" y2=\"%.0f\" stroke=\"#ddd\"/>\n", left, py(y), left+int(pw), py(y))
	}
	seen := map[float64]bool{}
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !seen[p.X] {
				seen[p.X] = true
				fmt.Fprintf(&b, "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", px(p.X), top+int(ph)+16, short(p.X))
			}
		}
	}
	fmt.Fprintf(&b, "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", left+pw/2, height-10, html.EscapeString(c.XLabel))
	fmt.Fprintf(&b, "<text x=\"14\" y=\"%.0f\" transform=\"rotate(-90 14 %.0f)\" text-anchor=\"middle\">%s</text>\n", top+ph/2, top+ph/2, html.EscapeString(c.YLabel))
	for i, s := range c.Series {
		col := palette[i%len(palette)]
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.X), py(p.Y)))
			fmt.Fprintf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%s: %s</title></circle>\n", px(p.X), py(p.Y), col, html.EscapeString(s.Label), short(p.Y))
		}
		fmt.Fprintf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"%s\"/>\n", col, strings.Join(pts, " "))
		fmt.Fprintf(&b, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
			width-right+12, top+i*18, col, width-right+28, top+i*18+10, html.EscapeString(s.Label))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func (c Chart) x(v float64) float64 {
	if c.LogX && v > 0 {
		return math.Log2(v)
	}
	return v
}

func short(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.0fk", v/1000)
	case v >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}
