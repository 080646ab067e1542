package repair

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// causeOrder is the order of the per-cause summary lines: the family doc's.
var causeOrder = []string{rules.Cause12985, rules.CauseR1, rules.CauseR2, rules.CauseR3, rules.CauseR4,
	rules.CauseR5, rules.CauseR6, rules.CauseR7, rules.CauseR8, rules.CauseR9, rules.CauseR10,
	rules.CauseR11, rules.CauseUnclear}

// write prints the report: a table, a summary line and one line per cause; or one JSON document.
// With --workflow, a line about the workflow as a whole comes first.
func write(o Options, rows []Row, sum Summary, explained *explanation) error {
	if o.Output == "json" {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Applied  bool         `json:"applied"`
			Workflow *explanation `json:"workflow,omitempty"`
			Rows     []Row        `json:"rows"`
			Summary  Summary      `json:"summary"`
		}{o.Apply, explained, nonNil(rows), sum})
	}
	if explained != nil {
		state := "not stuck: " + explained.Reason
		if explained.Stuck {
			state = "stuck: " + explained.Shape
		}
		fmt.Fprintf(o.Out, "workflow %s/%s (phase %s) %s\n", explained.Namespace, explained.Workflow, orDash(explained.Phase), state)
	}
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tWORKFLOW\tPHASE\tNODE\tPOD\tTR\tCAUSE\tVERDICT\tNEXT STEP\tREASON")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Workflow, orDash(r.WorkflowPhase), orDash(r.Node),
			orDash(r.Pod), orDash(r.TaskResult), orDash(r.Cause), r.Verdict, r.NextStep, r.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	mode := "report only (use --apply to repair)"
	if o.Apply {
		mode = "applied"
	}
	fmt.Fprintf(o.Out, "%d workflow(s) not completed, %d stuck: %s; %s\n", sum.Scanned, sum.Stuck, counts(sum.Counts), mode)
	for _, cause := range sortedCauses(sum.Causes) {
		fmt.Fprintf(o.Out, "  %-6s %s\n", cause, counts(sum.Causes[cause]))
	}
	return nil
}

// counts says c in words, leaving out the verdicts no row has.
func counts(c Counts) string {
	parts := []string{fmt.Sprintf("%d row(s)", c.Rows)}
	for _, p := range []struct {
		n    int
		what string
	}{{c.Repaired, "repaired"}, {c.Repair, "to repair"}, {c.Wait, "waiting"}, {c.Manual, "for the operator"}, {c.Skipped, "skipped"}, {c.Errors, "errors"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return parts[0] + ": " + strings.Join(parts[1:], ", ")
}

// sortedCauses returns the causes in the family doc's order, any other after them.
func sortedCauses(m map[string]Counts) []string {
	var out []string
	for _, c := range causeOrder {
		if _, ok := m[c]; ok {
			out = append(out, c)
		}
	}
	var rest []string
	for c := range m {
		if !slices.Contains(causeOrder, c) {
			rest = append(rest, c)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func nonNil(rows []Row) []Row {
	if rows == nil {
		return []Row{}
	}
	return rows
}
