package repair

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parse binds the flags on a fresh flag set, parses args and applies the defaults.
func parse(t *testing.T, args ...string) Options {
	t.Helper()
	var o Options
	fs := flag.NewFlagSet("repair", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.BindFlags(fs)
	require.NoError(t, fs.Parse(args))
	o.setDefaults()
	return o
}

// parseErr is parse returning the flag set's error, for flags refused as they are parsed.
func parseErr(args ...string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("repair", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.BindFlags(fs)
	err := fs.Parse(args)
	o.setDefaults()
	return o, err
}

func TestOptionsValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		args    []string
		scanned []string // the namespaces scanned in turn; "" is every namespace
		errs    []string // fragments of the error; none when valid
	}{
		"accepts one namespace":                    {args: []string{"--namespace", "argo"}, scanned: []string{"argo"}},
		"accepts the -n shorthand":                 {args: []string{"-n", "argo"}, scanned: []string{"argo"}},
		"accepts every namespace":                  {args: []string{"--all-namespaces"}, scanned: []string{""}},
		"accepts a comma-separated namespace list": {args: []string{"--namespaces", "team-a,team-b"}, scanned: []string{"team-a", "team-b"}},
		"accepts --namespaces repeated":            {args: []string{"--namespaces", "team-a", "--namespaces=team-b,team-c"}, scanned: []string{"team-a", "team-b", "team-c"}},
		"refuses no namespace choice": {
			errs: []string{"give --namespace <ns>, --namespaces <ns1,ns2> or --all-namespaces"},
		},
		"refuses --namespace with --all-namespaces": {
			args: []string{"-n", "argo", "-A"}, errs: []string{"give only one of --namespace, --namespaces and --all-namespaces, not --namespace and --all-namespaces"},
		},
		"refuses --namespaces with --namespace": {
			args: []string{"--namespaces", "a,b", "-n", "argo"}, errs: []string{"not --namespace and --namespaces"},
		},
		"refuses --namespaces with --all-namespaces": {
			args: []string{"--namespaces", "a,b", "-A"}, errs: []string{"not --namespaces and --all-namespaces"},
		},
		"refuses an empty name in --namespaces": {
			args: []string{"--namespaces", "a,,b"}, errs: []string{`--namespaces "a,,b": an empty name (a stray comma?)`},
		},
		"refuses an empty --namespaces": {
			args: []string{"--namespaces", ""}, errs: []string{"an empty name"},
		},
		"refuses a namespace listed twice": {
			args: []string{"--namespaces", "a,b,a"}, errs: []string{"--namespaces: a is listed twice"},
		},
		"refuses a name that is not a namespace name": {
			args: []string{"--namespaces", "a,Team_B"}, errs: []string{`--namespaces: "Team_B" is not a namespace name`},
		},
		"refuses a bad --namespace": {
			args: []string{"-n", "a b"}, errs: []string{`--namespace: "a b" is not a namespace name`},
		},
		"accepts --confirm-after": {args: []string{"-n", "argo", "--confirm-after", "5s"}, scanned: []string{"argo"}},
		"refuses a negative --confirm-after": {
			args: []string{"-n", "argo", "--confirm-after", "-1s"}, errs: []string{"--confirm-after must not be negative, got -1s"},
		},
		"accepts --workflow with -n": {args: []string{"-n", "argo", "--workflow", "my-wf"}, scanned: []string{"argo"}},
		"refuses --workflow without --namespace": {
			args: []string{"-A", "--workflow", "my-wf"}, errs: []string{"--workflow needs --namespace (-n), not --namespaces or --all-namespaces"},
		},
		"refuses --workflow with --selector": {
			args: []string{"-n", "argo", "--workflow", "my-wf", "--selector", "a=b"}, errs: []string{"--selector does not apply with --workflow"},
		},
		"refuses a --workflow that is not a workflow name": {
			args: []string{"-n", "argo", "--workflow", "My WF"}, errs: []string{`--workflow: "My WF" is not a workflow name`},
		},
		"accepts --qps and --burst": {args: []string{"-A", "--qps", "20.5", "--burst", "40"}, scanned: []string{""}},
		"refuses a negative --qps": {
			args: []string{"-A", "--qps", "-1"}, errs: []string{"--qps and --burst must be positive (0 for the default), got -1 and 100"},
		},
		"refuses a negative --burst": {
			args: []string{"-A", "--burst", "-5"}, errs: []string{"--qps and --burst must be positive (0 for the default), got 50 and -5"},
		},
		"refuses a --qps that is not a number": {
			args: []string{"-A", "--qps", "fast"}, errs: []string{`invalid value "fast" for flag -qps`},
		},
		"reports every invalid option at once": {
			args: []string{"--namespaces", "a,a", "-o", "yaml"}, errs: []string{"a is listed twice", "-o must be table or json"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			o, err := parseErr(tc.args...)
			if err == nil {
				err = o.Validate()
			}
			if len(tc.errs) == 0 {
				require.NoError(t, err)
				assert.Equal(t, tc.scanned, o.namespaces())
				return
			}
			require.Error(t, err)
			for _, e := range tc.errs {
				assert.Contains(t, err.Error(), e)
			}
		})
	}
}

func TestOptionsValidateRefusesAnEmptyNamespaceList(t *testing.T) {
	o := Options{Namespaces: []string{}}
	o.setDefaults()
	err := o.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--namespaces: no namespace given")
}

func TestOptionsConfirmAfter(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want time.Duration
	}{
		"waits 30s by default":             {want: 30 * time.Second},
		"waits as long as --confirm-after": {args: []string{"--confirm-after", "2m"}, want: 2 * time.Minute},
		"takes 0 for the default":          {args: []string{"--confirm-after", "0"}, want: DefaultConfirmAfter},
	} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, parse(t, tc.args...).ConfirmAfter)
		})
	}
	o := Options{}
	o.setDefaults()
	assert.Equal(t, DefaultConfirmAfter, o.ConfirmAfter, "a zero ConfirmAfter in Options means the default")
}

func TestOptionsRateLimit(t *testing.T) {
	for name, tc := range map[string]struct {
		args  []string
		qps   float32
		burst int
	}{
		"lifts client-go's 5 and 10 by default": {qps: DefaultQPS, burst: DefaultBurst},
		"takes --qps and --burst":               {args: []string{"--qps", "20", "--burst", "30"}, qps: 20, burst: 30},
		"takes 0 for the defaults":              {args: []string{"--qps", "0", "--burst", "0"}, qps: DefaultQPS, burst: DefaultBurst},
	} {
		t.Run(name, func(t *testing.T) {
			o := parse(t, tc.args...)
			assert.Equal(t, tc.qps, o.QPS)
			assert.Equal(t, tc.burst, o.Burst)
		})
	}
	o := Options{}
	o.setDefaults()
	assert.Equal(t, float32(DefaultQPS), o.QPS, "a zero QPS in Options means the default")
	assert.Equal(t, DefaultBurst, o.Burst, "a zero Burst in Options means the default")
}

// The CronJob's arguments, parsed and validated as the deploy tests do (flags then Validate,
// without Run's defaults): --qps and --burst unset must validate.
func TestOptionsFromFlagsAloneValidate(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("repair", flag.ContinueOnError)
	o.BindFlags(fs)
	require.NoError(t, fs.Parse([]string{"--all-namespaces", "--apply", "--fail-on-manual"}))
	require.NoError(t, o.Validate())
	assert.Equal(t, float32(DefaultQPS), o.QPS)
	assert.Equal(t, DefaultBurst, o.Burst)
}
