package deploy

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// objectKey names a rendered object: kind, namespace (empty when cluster-scoped) and name.
func objectKey(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + filepath.Join(o.GetNamespace(), o.GetName())
}

// byKey indexes rendered objects by objectKey.
func byKey(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		m[objectKey(o)] = o
	}
	return m
}

// keys are the sorted keys of m.
func keys(m map[string]*unstructured.Unstructured) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// The chart is written by hand beside deploy/, not generated from it: this is what keeps the two
// one install. Objects are compared whole, as the API server would receive them (labels,
// annotations, every field of the spec); the chart adds no labels of its own.
func TestChartRendersWhatKustomizeRenders(t *testing.T) {
	for name, c := range map[string]struct {
		chart, kustomize source
		// onlyKustomize are the objects only deploy/ renders.
		onlyKustomize []string
	}{
		"the chart's defaults render deploy/ but its Namespace, which Helm needs before it installs": {
			chart: chart(), kustomize: kustomize("deploy"),
			onlyKustomize: []string{"Namespace argo-completion-webhook"},
		},
		"the chart with namespace.create renders deploy/ exactly": {
			chart: chart("namespace.create=true"), kustomize: kustomize("deploy"),
		},
		"the chart's monitoring renders deploy/components/monitoring": {
			chart:     chart("namespace.create=true", "monitoring.serviceMonitor.enabled=true", "monitoring.prometheusRule.enabled=true"),
			kustomize: kustomize("deploy", monitoringComponent),
		},
	} {
		t.Run(name, func(t *testing.T) {
			fromChart, fromKustomize := byKey(render(t, c.chart)), byKey(render(t, c.kustomize))
			var onlyKustomize, onlyChart []string
			for k := range fromKustomize {
				if _, ok := fromChart[k]; !ok {
					onlyKustomize = append(onlyKustomize, k)
				}
			}
			for k := range fromChart {
				if _, ok := fromKustomize[k]; !ok {
					onlyChart = append(onlyChart, k)
				}
			}
			assert.ElementsMatch(t, c.onlyKustomize, onlyKustomize, "objects only %s renders", c.kustomize.name)
			assert.Empty(t, onlyChart, "objects only %s renders", c.chart.name)
			for _, k := range keys(fromKustomize) {
				if o, ok := fromChart[k]; ok {
					assert.Equal(t, fromKustomize[k].Object, o.Object, "%s: the chart renders it as deploy/ does", k)
				}
			}
			assert.GreaterOrEqual(t, len(fromChart), 16, "the comparison saw the whole install")
		})
	}
}

func TestChartVariantsAreItsCIValues(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, chartDir, "ci", "*-values.yaml"))
	require.NoError(t, err)
	var want []string
	for _, f := range files {
		want = append(want, chart("ci/"+filepath.Base(f)).name)
	}
	var got []string
	for _, src := range chartSources[1:] {
		got = append(got, src.name)
	}
	assert.ElementsMatch(t, want, got, "every ci/*-values.yaml (which make chart-lint lints) is validated here, and only those")
	assert.Len(t, got, 5, "audit, scoped, existing issuer, archive, monitoring")
}

// Under another release name and namespace, every reference between the chart's objects still
// holds: nothing names deploy/'s defaults.
func TestChartObjectsFollowTheRelease(t *testing.T) {
	const release, namespace = "wh", "platform"
	objs := render(t, chartAs(release, namespace, "ci/monitoring-values.yaml", "namespaces={"+scopedNamespace+"}"))
	const name, repairName = "wh-argo-completion-webhook", "wh-argo-completion-repair"
	for _, o := range objs {
		switch {
		case o.GetKind() == "Role" || o.GetKind() == "RoleBinding":
			assert.Equal(t, scopedNamespace, o.GetNamespace(), "%s is in the scoped namespace", objectKey(o))
		case o.GetKind() == "MutatingWebhookConfiguration":
			assert.Empty(t, o.GetNamespace())
		default:
			assert.Equal(t, namespace, o.GetNamespace(), "%s is in the release namespace", objectKey(o))
		}
		assert.True(t, strings.HasPrefix(o.GetName(), name) || strings.HasPrefix(o.GetName(), repairName),
			"%s is named after the release", objectKey(o))
	}
	assertWiredTogether(t, objs, namespace, name, repairName)
	mwc := find(t, objs, "MutatingWebhookConfiguration", name)
	selectors, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	for _, h := range selectors {
		exprs, _, _ := unstructured.NestedSlice(h.(map[string]any), "namespaceSelector", "matchExpressions")
		assert.Equal(t, []any{
			map[string]any{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": []any{namespace}},
			map[string]any{"key": "kubernetes.io/metadata.name", "operator": "In", "values": []any{scopedNamespace}},
		}, exprs, "the webhook is never called for its own namespace, and only for the scoped ones")
	}
}

func TestRenderingsAreWiredTogether(t *testing.T) {
	for _, src := range allSources() {
		t.Run(src.name, func(t *testing.T) {
			assertWiredTogether(t, render(t, src), deployNamespace, webhookAccount, repairAccount)
		})
	}
}

// assertWiredTogether checks the references between the objects of an install in namespace whose
// webhook objects are named name and repair objects repairName: Service to pods, certificate to
// Service and Deployment, webhook configuration to Service and certificate, bindings to accounts.
func assertWiredTogether(t *testing.T, objs []*unstructured.Unstructured, namespace, name, repairName string) {
	t.Helper()
	dep := find(t, objs, "Deployment", name)
	podLabels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
	for kind, path := range map[string][]string{
		"Service":             {"spec", "selector"},
		"PodDisruptionBudget": {"spec", "selector", "matchLabels"},
		"NetworkPolicy":       {"spec", "podSelector", "matchLabels"},
	} {
		sel, _, _ := unstructured.NestedStringMap(find(t, objs, kind, name).Object, path...)
		require.NotEmpty(t, sel, "%s selects pods", kind)
		for k, v := range sel {
			assert.Equal(t, v, podLabels[k], "%s %s selects the webhook's pods", kind, name)
		}
	}
	sa, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "serviceAccountName")
	assert.Equal(t, name, sa)
	cron := find(t, objs, "CronJob", repairName)
	sa, _, _ = unstructured.NestedString(cron.Object, "spec", "jobTemplate", "spec", "template", "spec", "serviceAccountName")
	assert.Equal(t, repairName, sa)
	for _, o := range objs {
		if o.GetKind() != "RoleBinding" && o.GetKind() != "ClusterRoleBinding" {
			continue
		}
		subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
		for _, s := range subjects {
			s := s.(map[string]any)
			assert.Equal(t, namespace, s["namespace"], "%s binds an account of the install's namespace", objectKey(o))
			find(t, objs, "ServiceAccount", s["name"].(string))
		}
		ref, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
		assert.Equal(t, o.GetName(), ref, "%s binds the role of its name", objectKey(o))
	}

	serving := find(t, objs, "Certificate", name+"-serving")
	dns, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames")
	assert.Equal(t, []string{
		fmt.Sprintf("%s.%s.svc", name, namespace), fmt.Sprintf("%s.%s.svc.cluster.local", name, namespace),
	}, dns, "the certificate names the Service")
	secret, _, _ := unstructured.NestedString(serving.Object, "spec", "secretName")
	vols, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "volumes")
	assert.Equal(t, secret, vols[0].(map[string]any)["secret"].(map[string]any)["secretName"], "the Deployment mounts the serving certificate's Secret")

	mwc := find(t, objs, "MutatingWebhookConfiguration", name)
	assert.Equal(t, namespace+"/"+serving.GetName(), mwc.GetAnnotations()["cert-manager.io/inject-ca-from"])
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	require.Len(t, hooks, 2)
	for _, h := range hooks {
		svc, _, _ := unstructured.NestedMap(h.(map[string]any), "clientConfig", "service")
		assert.Equal(t, []any{name, namespace}, []any{svc["name"], svc["namespace"]}, "the webhook calls the install's Service")
		exprs, _, _ := unstructured.NestedSlice(h.(map[string]any), "namespaceSelector", "matchExpressions")
		assert.Contains(t, exprs, map[string]any{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": []any{namespace}},
			"the webhook is never called for its own namespace")
	}
}

func TestChartSignsWithAnExistingIssuerInsteadOfItsOwnChain(t *testing.T) {
	objs := render(t, chart("ci/existing-issuer-values.yaml"))
	for _, o := range objs {
		assert.NotEqual(t, "Issuer", o.GetKind(), "no Issuer of the chart's own: %s", o.GetName())
	}
	var certs []string
	for _, o := range objs {
		if o.GetKind() == "Certificate" {
			certs = append(certs, o.GetName())
		}
	}
	assert.Equal(t, []string{"argo-completion-webhook-serving"}, certs, "only the serving certificate, no CA")
	ref, _, _ := unstructured.NestedStringMap(find(t, objs, "Certificate", "argo-completion-webhook-serving").Object, "spec", "issuerRef")
	assert.Equal(t, map[string]string{"kind": "ClusterIssuer", "name": "internal-ca"}, ref)
}

func TestChartRefusesValuesItCannotInstall(t *testing.T) {
	for name, c := range map[string]struct {
		values []string
		err    string
	}{
		"an unknown value (a typo) is refused by the schema": {
			values: []string{"replica=3"}, err: "additional properties 'replica' not allowed",
		},
		"a mode other than enforce or audit is refused": {
			values: []string{"mode=dry-run"}, err: "value must be one of 'enforce', 'audit'",
		},
		"an archive label selector without archive is refused": {
			values: []string{"archiveLabelSelector=a=b"}, err: "set archive: true with it",
		},
		"an issuer kind other than Issuer or ClusterIssuer is refused": {
			values: []string{"certificate.issuerRef.kind=Vault", "certificate.issuerRef.name=x"}, err: "value must be one of 'Issuer', 'ClusterIssuer'",
		},
		"scoping to the release's own namespace is refused": {
			values: []string{"namespaces={" + deployNamespace + "}"}, err: "must not list the release namespace",
		},
		"a namespace that is not a DNS label is refused": {
			values: []string{"namespaces={Argo}"}, err: "/namespaces/0",
		},
		"a lookup timeout that is not a duration is refused": {
			values: []string{"lookupTimeout=1"}, err: "/lookupTimeout",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderOutput(t, chart(c.values...))
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.err)
		})
	}
}

// Each of the chart's webhook values reaches the webhook as its flag, as the webhook parses it.
func TestChartPassesEachWebhookValueAsItsFlag(t *testing.T) {
	objs := render(t, chart("mode=audit", "replicas=3", "controllerUsernames={system:serviceaccount:argo:argo,system:serviceaccount:ci:argo}",
		"namespaces={argo,team-a}", "archive=true", "archiveLabelSelector=team in (a\\,b)", "lookupTimeout=500ms",
		"b2.enabled=false", "b2.grace=5m", "extraArgs={--host=0.0.0.0}"))
	o := webhookOptions(t, objs)
	assert.Equal(t, webhook.ModeAudit, o.Mode)
	assert.Equal(t, []string{"system:serviceaccount:argo:argo", "system:serviceaccount:ci:argo"}, o.ControllerUsernames)
	assert.Equal(t, []string{"argo", "team-a"}, o.Namespaces)
	assert.True(t, o.Archive)
	assert.Equal(t, "team in (a,b)", o.ArchiveLabelSelector)
	assert.Equal(t, 500*time.Millisecond, o.LookupTimeout)
	assert.True(t, o.DisableB2, "--enable-b2=false")
	assert.Equal(t, 5*time.Minute, o.B2Grace)
	assert.Equal(t, "0.0.0.0", o.Host, "extraArgs are passed on")
	replicas, _, _ := unstructured.NestedFieldNoCopy(find(t, objs, "Deployment", webhookAccount).Object, "spec", "replicas")
	assert.EqualValues(t, 3, number(replicas))

	anyUser := webhookOptions(t, render(t, chart("controllerUsernames={*}")))
	assert.Nil(t, anyUser.ControllerUsernames, `["*"]: B2 acts on any user's updates`)
}
