// Command benchtable reads `go test -bench BenchmarkReview -benchmem` output (stdin or a file)
// and prints, per request size, time/op, bytes/op and allocs/op of floor, typical and ours, with
// the ratios ours/floor and typical/ours. `make bench` pipes the benchmark into it.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// line matches e.g. "BenchmarkReview/workflow-5KB/ours  	  1000	  12345 ns/op	 400.00 MB/s	  5678 B/op	  90 allocs/op".
var line = regexp.MustCompile(`^BenchmarkReview/([^/\s]+)/(floor|typical|ours)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+[\d.]+ MB/s)?\s+(\d+) B/op\s+(\d+) allocs/op`)

type result struct{ ns, bytes, allocs float64 }

func main() {
	var in io.Reader = os.Stdin
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	results := map[string]map[string]result{}
	var order []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		text := sc.Text()
		fmt.Println(text) // pass the raw benchmark output through (benchstat reads it)
		m := line.FindStringSubmatch(strings.TrimSpace(text))
		if m == nil {
			continue
		}
		if results[m[1]] == nil {
			results[m[1]] = map[string]result{}
			order = append(order, m[1])
		}
		ns, _ := strconv.ParseFloat(m[3], 64)
		b, _ := strconv.ParseFloat(m[4], 64)
		a, _ := strconv.ParseFloat(m[5], 64)
		results[m[1]][m[2]] = result{ns, b, a}
	}
	if len(order) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no BenchmarkReview results in the input")
		os.Exit(1)
	}
	fmt.Printf("\n%-28s %-8s %12s %12s %10s %11s %12s\n", "request", "reader", "time/op", "bytes/op", "allocs/op", "ours/floor", "typical/ours")
	for _, name := range order {
		r := results[name]
		for _, who := range []string{"floor", "typical", "ours"} {
			x, ok := r[who]
			if !ok {
				continue
			}
			ratioFloor, ratioTypical := "", ""
			if who == "ours" {
				if f, ok := r["floor"]; ok {
					ratioFloor = fmt.Sprintf("%.2fx", x.ns/f.ns)
				}
				if t, ok := r["typical"]; ok {
					ratioTypical = fmt.Sprintf("%.1fx", t.ns/x.ns)
				}
			}
			fmt.Printf("%-28s %-8s %12s %12s %10.0f %11s %12s\n", name, who, duration(x.ns), size(x.bytes), x.allocs, ratioFloor, ratioTypical)
		}
	}
}

func duration(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func size(b float64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
