// Package testcerts makes a throwaway CA and a serving certificate signed by it, written the
// way cert-manager writes a kubernetes.io/tls Secret (ca.crt, tls.crt, tls.key), for tests and
// for local development (make certs). It is not for production: use cert-manager (deploy/).
package testcerts
