package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// memAvailableKiB returns the system's MemAvailable.
func memAvailableKiB() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no MemAvailable in /proc/meminfo")
}

// controlPlaneRSSKiB returns the summed VmRSS of this process's kube-apiserver and etcd children.
func controlPlaneRSSKiB() int64 {
	self := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var total int64
	for _, stat := range stats {
		b, err := os.ReadFile(stat)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		comm, fields := s[open+1:end], strings.Fields(s[end+1:])
		if len(fields) < 2 || fields[1] != self || (comm != "kube-apiserver" && comm != "etcd") {
			continue
		}
		if rss, _, err := memory(filepath.Base(filepath.Dir(stat))); err == nil {
			total += rss
		}
	}
	return total
}
