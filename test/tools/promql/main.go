// Command promql parses rule expressions with Prometheus' own parser
// (github.com/prometheus/prometheus/promql/parser), as Prometheus does when it loads a rule file.
// It reads a JSON array of rules ({"name", "expr", "for"}) on stdin and writes a JSON array of
// results in the same order: the expression's type and the series selectors it holds (metric
// name and label matchers), or the parser's error. The deploy tests feed it every PrometheusRule
// they render and check what the selectors point at.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// rule is one alerting or recording rule as the tests send it.
type rule struct {
	Name string `json:"name"`
	Expr string `json:"expr"`
	For  string `json:"for,omitempty"`
}

// result is what the parser made of a rule.
type result struct {
	Name string `json:"name"`
	// Type is the expression's value type: vector, scalar, matrix or string.
	Type string `json:"type,omitempty"`
	// Selectors are the expression's series selectors, in the order they appear.
	Selectors []selector `json:"selectors,omitempty"`
	// Error is the parser's error for the expression or the for duration; empty when both parse.
	Error string `json:"error,omitempty"`
}

// selector is one series selector: a metric name and its other label matchers.
type selector struct {
	Metric   string    `json:"metric"`
	Matchers []matcher `json:"matchers,omitempty"`
}

// matcher is one label matcher; Type is =, !=, =~ or !~.
type matcher struct {
	Label string `json:"label"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

func main() {
	var rules []rule
	if err := json.NewDecoder(os.Stdin).Decode(&rules); err != nil {
		fmt.Fprintln(os.Stderr, "promql: reading the rules on stdin:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(rules))
	for _, r := range rules {
		results = append(results, check(r))
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "promql:", err)
		os.Exit(2)
	}
}

// check parses r's for duration and expression, and lists the expression's selectors.
func check(r rule) result {
	res := result{Name: r.Name}
	if r.For != "" {
		if _, err := model.ParseDuration(r.For); err != nil {
			res.Error = fmt.Sprintf("for %q: %v", r.For, err)
			return res
		}
	}
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Type = string(expr.Type())
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := selector{Metric: vs.Name}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				continue
			}
			s.Matchers = append(s.Matchers, matcher{Label: m.Name, Type: m.Type.String(), Value: m.Value})
		}
		res.Selectors = append(res.Selectors, s)
		return nil
	})
	return res
}
