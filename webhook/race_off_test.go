//go:build !race

package webhook

// raceDetector says the tests run under -race; without it latency bounds are asserted.
const raceDetector = false
