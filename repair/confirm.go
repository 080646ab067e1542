package repair

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// confirm is the second pass of an Apply run: after the confirmation delay it diagnoses each
// candidate's workflow again on facts read afresh, once per workflow, and flips or creates what
// is still safe and unchanged, replacing the candidates' rows.
func (r *run) confirm(ctx context.Context, rows []Row, candidates []candidate) error {
	fmt.Fprintf(r.o.Err, "%d node(s) to repair: waiting %s (--confirm-after) before re-reading each workflow, its task results, its pods and its executors' rights, to repair only what is still safe and unchanged\n",
		len(candidates), r.o.ConfirmAfter)
	if r.o.AfterFirstPass != nil {
		r.o.AfterFirstPass()
	}
	wait := time.NewTimer(r.o.ConfirmAfter)
	defer wait.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("waiting to confirm %d node(s) to repair: %w", len(candidates), ctx.Err())
	case <-wait.C:
	}
	fmt.Fprintf(r.o.Err, "confirming %d node(s)\n", len(candidates))
	repaired := 0
	// A workflow's candidates are consecutive: the first pass records them together.
	for begin := 0; begin < len(candidates); {
		end := begin + 1
		for end < len(candidates) && candidates[end].namespace == candidates[begin].namespace && candidates[end].workflow == candidates[begin].workflow {
			end++
		}
		g, d, err := r.regather(ctx, candidates[begin])
		for _, c := range candidates[begin:end] {
			if err != nil {
				rows[c.row] = unreadable(rows[c.row], "re-reading after the confirmation delay", err)
				continue
			}
			rows[c.row] = r.confirmOne(ctx, rows[c.row], c, g, d)
			if rows[c.row].Verdict == VerdictRepaired {
				repaired++
			}
		}
		begin = end
	}
	fmt.Fprintf(r.o.Err, "confirmed %d node(s): %d repaired, %d not\n", len(candidates), repaired, len(candidates)-repaired)
	return nil
}

// regather reads candidate c's workflow afresh and diagnoses it again.
func (r *run) regather(ctx context.Context, c candidate) (*gathered, rules.Diagnosis, error) {
	u, err := r.getWorkflow(ctx, c.namespace, c.workflow)
	if err != nil {
		return nil, rules.Diagnosis{}, err
	}
	return r.gather(ctx, u, r.o.Workflow != "", true)
}

// confirmOne repairs candidate c when the fresh diagnosis d still finds it safe, with the same
// action, and its fingerprint has not changed. A flip refused by its resourceVersion
// precondition (a concurrent write) re-reads everything and decides again, once. first is the
// row of the first pass.
func (r *run) confirmOne(ctx context.Context, first Row, c candidate, g *gathered, d rules.Diagnosis) Row {
	for attempt := 0; ; attempt++ {
		prefix := ""
		if attempt > 0 {
			prefix = "re-decided after a concurrent write: "
		}
		fd, found := findingOf(d, c.node)
		row := first
		if found {
			row = rowOf(g.facts.Workflow, fd)
		}
		now := "nothing to repair on node " + c.node + " (" + orNone(d.Reason) + ")"
		if found {
			now = fd.Reason
		}
		_, exists := g.results[c.node]
		switch changed := c.facts.changes(g.fingerprint(c.node)); {
		case c.action == rules.ActionFlip && !exists:
			return skip(row, "deleted meanwhile", "nothing to do")
		case c.action == rules.ActionCreate && exists:
			return skip(row, "created meanwhile", "nothing to do")
		case changed != "":
			return skip(row, prefix+"facts changed during the confirmation delay: "+changed+"; now: "+now, "run repair again")
		case !found || !fd.Decision.Mutates() || fd.Action != c.action:
			return skip(row, prefix+"re-decided after the confirmation delay: "+now, "run repair again")
		}
		row.Reason = prefix + fd.Reason
		err := r.act(ctx, c, g, fd)
		switch {
		case err == nil:
			r.recordEvent(ctx, g, c, fd)
			row.Verdict, row.NextStep = VerdictRepaired, "repaired"
			if c.action == rules.ActionCreate {
				row.TaskResult = "true (created)"
			} else {
				row.TaskResult = "true (flipped)"
			}
			return row
		case apierrors.IsConflict(err) && attempt == 0:
			if g, d, err = r.regather(ctx, c); err != nil {
				return unreadable(row, "re-reading after a concurrent write", err)
			}
			continue
		case apierrors.IsNotFound(err) && c.action == rules.ActionFlip:
			return skip(row, "deleted meanwhile", "nothing to do")
		case apierrors.IsAlreadyExists(err) && c.action == rules.ActionCreate:
			return skip(row, "created meanwhile", "nothing to do")
		default:
			row.Verdict, row.Reason, row.NextStep = VerdictError, err.Error(), "run repair again"
			return row
		}
	}
}

func skip(row Row, reason, next string) Row {
	row.Verdict, row.Reason, row.NextStep = VerdictSkip, reason, next
	return row
}

// findingOf returns the diagnosis's finding about node id.
func findingOf(d rules.Diagnosis, id string) (rules.Finding, bool) {
	for _, fd := range d.Findings {
		if fd.Node == id {
			return fd, true
		}
	}
	return rules.Finding{}, false
}
