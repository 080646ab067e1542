package repair

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
)

// write prints the report: a table and a summary line, or one JSON document.
func write(o Options, rows []Row, sum Summary) error {
	if o.Output == "json" {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Applied bool    `json:"applied"`
			Rows    []Row   `json:"rows"`
			Summary Summary `json:"summary"`
		}{o.Apply, nonNil(rows), sum})
	}
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tWORKFLOW\tTASK RESULT\tWORKFLOW PHASE\tAGE\tVERDICT\tREASON")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Workflow, r.TaskResult, r.WorkflowPhase, r.Age, r.Verdict, r.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	mode := "report only (use --apply to patch)"
	if o.Apply {
		mode = "applied"
	}
	_, err := fmt.Fprintf(o.Out, "%d task result(s) not complete: %d repaired, %d to repair, %d skipped, %d errors; %s\n",
		sum.Scanned, sum.Repaired, sum.Repair, sum.Skipped, sum.Errors, mode)
	return err
}

func nonNil(rows []Row) []Row {
	if rows == nil {
		return []Row{}
	}
	return rows
}
