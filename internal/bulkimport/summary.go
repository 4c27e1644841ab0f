package bulkimport

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteSummary writes the counts per type, the skipped inputs and the
// errors by file, line, issue code and expression. It leaves out the
// issues' diagnostics, which may quote resource content: the output of an
// import is an operator's log, and holds no patient data.
func (r *Report) WriteSummary(w io.Writer, took time.Duration) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "type\tlines\tcreated\tupdated\tunchanged\tfailed\t")
	var total Counts
	for _, typ := range slices.Sorted(maps.Keys(r.Types)) {
		c := r.Types[typ]
		if typ == "" {
			typ = "(unknown type)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", typ, c.Lines, c.Created, c.Updated, c.Unchanged, c.Failed)
		total.Lines += c.Lines
		total.Created += c.Created
		total.Updated += c.Updated
		total.Unchanged += c.Unchanged
		total.Failed += c.Failed
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t\n", total.Lines, total.Created, total.Updated, total.Unchanged, total.Failed)
	_ = tw.Flush()
	rate := 0.0
	if took > 0 {
		rate = float64(total.Lines) / took.Seconds()
	}
	fmt.Fprintf(w, "%d lines in %s (%.0f/s)\n", total.Lines, took.Round(time.Millisecond), rate)
	for _, name := range r.Skipped {
		fmt.Fprintf(w, "skipped %s: not named after a resource type\n", name)
	}
	if total.Failed > len(r.Errors) {
		fmt.Fprintf(w, "%d lines failed; the first %d:\n", total.Failed, len(r.Errors))
	}
	for _, e := range r.Errors {
		var where []string
		for _, is := range e.Err.Issues {
			s := is.Code
			if len(is.Expression) > 0 {
				s += " at " + strings.Join(is.Expression, ", ")
			}
			where = append(where, s)
		}
		fmt.Fprintf(w, "%s line %d: %s\n", e.Source, e.Line, strings.Join(where, "; "))
	}
}
