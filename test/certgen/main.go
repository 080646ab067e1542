// Command certgen writes a throwaway CA and a serving certificate for local development
// (make certs): ca.crt, tls.crt and tls.key in -dir, valid for -hosts. Not for production.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/argo-completion-webhook/argo-completion-webhook/internal/testcerts"
)

func main() {
	dir := flag.String("dir", "certs", "Directory to write ca.crt, tls.crt and tls.key into.")
	hosts := flag.String("hosts", "localhost,127.0.0.1", "Comma-separated DNS names and IPs of the serving certificate.")
	flag.Parse()
	ca, err := testcerts.NewCA()
	if err == nil {
		err = ca.WriteServing(*dir, strings.Split(*hosts, ",")...)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "certgen:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s/{ca.crt,tls.crt,tls.key} for %s\n", *dir, *hosts)
}
