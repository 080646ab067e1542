//go:build race

package webhook

// raceDetector says the tests run under -race (`make unit`), whose instrumentation slows the
// handlers 5–20×: a latency bound would then measure the detector, not the webhook.
const raceDetector = true
