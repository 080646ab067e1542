// Package harness holds what the integration suite, the end-to-end suite and `make demo` share:
// a webhook server started with webhook.Run (the binary's own entry point) on loopback with its
// own CA, registration of the shipped MutatingWebhookConfiguration (deploy/) with only its
// clientConfig rewritten, metrics scraping, Argo's real workflow-controller as a child process,
// and the simulated node that stands in for the kubelet and argoexec.
package harness
