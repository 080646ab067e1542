package deploy

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

// podSecurityLabel is the label that makes the API server enforce Pod Security "restricted" in
// deploy/'s namespace: deploy/base/namespace.yaml sets it, and the README has the chart's
// operator set it before `helm install`.
const podSecurityLabel = "pod-security.kubernetes.io/enforce"

func TestManifestsAreAcceptedByServerSideDryRun(t *testing.T) {
	// Every documented rendering, and the chart under another release name in another namespace.
	sources := append(allSources(), chartAs("wh", "platform", "ci/monitoring-values.yaml", "namespaces={"+scopedNamespace+"}"))
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			objs := render(t, src)
			require.NotEmpty(t, objs)
			cfg := rest.CopyConfig(adminCfg)
			w := &harness.Warnings{}
			cfg.WarningHandler = w
			c, err := client.New(cfg, client.Options{})
			require.NoError(t, err)
			ctx := context.Background()
			// Namespaced objects can only be dry-run into a namespace that exists: dry-run the
			// Namespace like everything else, then create it for real.
			rendered := map[string]bool{}
			for _, o := range objs {
				if o.GetKind() != "Namespace" {
					continue
				}
				rendered[o.GetName()] = true
				live := o.DeepCopy()
				err := c.Get(ctx, client.ObjectKeyFromObject(o), live)
				if apierrors.IsNotFound(err) {
					require.NoError(t, c.Create(ctx, o.DeepCopy(), client.DryRunAll), "dry-run %s", o.GetName())
					require.NoError(t, c.Create(ctx, o.DeepCopy()))
					continue
				}
				require.NoError(t, err)
				for k, v := range o.GetLabels() {
					require.Equal(t, v, live.GetLabels()[k], "namespace %s already carries the rendered label %s", o.GetName(), k)
				}
			}
			if !rendered[src.namespace] {
				// The chart's operator creates and labels the release namespace (README, Install).
				ensureNamespace(t, src.namespace, podSecurityLabel, "restricted")
			}
			var ns corev1.Namespace
			require.NoError(t, admin.Get(ctx, client.ObjectKey{Name: src.namespace}, &ns))
			require.Equal(t, "restricted", ns.Labels[podSecurityLabel], "Pod Security is enforced where the pods run, or no warning could come")
			// A scoped install's Roles live in Argo's namespace, which Argo's install creates.
			for _, o := range objs {
				if ns := o.GetNamespace(); ns != "" && !rendered[ns] {
					ensureNamespace(t, ns)
				}
			}
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					continue
				}
				assert.NoError(t, c.Create(ctx, o.DeepCopy(), client.DryRunAll), "server-side dry-run of %s %s", o.GetKind(), o.GetName())
			}
			assert.Empty(t, w.All(), "no warnings (Pod Security 'restricted' is enforced on the namespace)")
		})
	}
}

// ensureNamespace creates namespace name unless it exists, and gives it labels, given as key and
// value pairs, unless it carries them.
func ensureNamespace(t *testing.T, name string, labels ...string) {
	t.Helper()
	ctx := context.Background()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: want}}
	err := admin.Create(ctx, ns)
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err, "creating namespace %s", name)
		return
	}
	require.NoError(t, admin.Get(ctx, client.ObjectKey{Name: name}, ns))
	missing := false
	for k, v := range want {
		if ns.Labels[k] != v {
			missing = true
			metav1.SetMetaDataLabel(&ns.ObjectMeta, k, v)
		}
	}
	if missing {
		require.NoError(t, admin.Update(ctx, ns), "labelling namespace %s", name)
	}
}

// ensureDeployNamespace makes deploy/'s namespace as deploy/base/namespace.yaml does and as the
// README has the chart's operator make it: Pod Security "restricted" enforced.
func ensureDeployNamespace(t *testing.T) {
	t.Helper()
	ensureNamespace(t, deployNamespace, podSecurityLabel, "restricted")
}

// find returns the rendered object of kind and name.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s in the rendered manifests", kind, name)
	return nil
}

func TestManifestsCarryTheProductionDefaults(t *testing.T) {
	for _, src := range []source{kustomize("deploy"), chart()} {
		t.Run(src.name, func(t *testing.T) { assertProductionDefaults(t, render(t, src)) })
	}
	for _, src := range []source{kustomize("deploy/overlays/audit"), chart("ci/audit-values.yaml")} {
		t.Run(src.name, func(t *testing.T) {
			audit := find(t, render(t, src), "Deployment", "argo-completion-webhook")
			auditArgs, _, _ := unstructured.NestedSlice(audit.Object, "spec", "template", "spec", "containers")
			a := strings.Join(toStrings(auditArgs[0].(map[string]any)["args"]), " ")
			assert.Contains(t, a, "--mode=audit")
			assert.NotContains(t, a, "--mode=enforce")
		})
	}
}

// assertProductionDefaults checks the rendered objects of an unscoped install in enforce mode.
func assertProductionDefaults(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	dep := find(t, objs, "Deployment", "argo-completion-webhook")
	replicas, _, _ := unstructured.NestedFieldNoCopy(dep.Object, "spec", "replicas")
	assert.EqualValues(t, 2, replicas)
	spec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	assert.Equal(t, "system-cluster-critical", spec["priorityClassName"])
	assert.NotNil(t, spec["affinity"].(map[string]any)["podAntiAffinity"])
	grace := number(spec["terminationGracePeriodSeconds"])
	container := spec["containers"].([]any)[0].(map[string]any)
	args := strings.Join(toStrings(container["args"]), " ")
	assert.Contains(t, args, "--shutdown-delay=10s")
	assert.Greater(t, grace, float64(10+2), "grace period covers the shutdown delay and a 2s request (got %v)", spec["terminationGracePeriodSeconds"])
	sc := container["securityContext"].(map[string]any)
	assert.Equal(t, false, sc["allowPrivilegeEscalation"])
	assert.Equal(t, true, sc["readOnlyRootFilesystem"])
	assert.Equal(t, []any{"ALL"}, sc["capabilities"].(map[string]any)["drop"])
	podSC := spec["securityContext"].(map[string]any)
	assert.Equal(t, true, podSC["runAsNonRoot"])
	assert.Equal(t, "RuntimeDefault", podSC["seccompProfile"].(map[string]any)["type"])
	assert.Contains(t, args, "--cert-dir=/etc/argo-completion-webhook/certs")
	mount := container["volumeMounts"].([]any)[0].(map[string]any)
	assert.Equal(t, "/etc/argo-completion-webhook/certs", mount["mountPath"])
	assert.Equal(t, true, mount["readOnly"])
	assert.Equal(t, "/readyz", container["readinessProbe"].(map[string]any)["httpGet"].(map[string]any)["path"])
	assert.Equal(t, "/healthz", container["livenessProbe"].(map[string]any)["httpGet"].(map[string]any)["path"])
	find(t, objs, "PodDisruptionBudget", "argo-completion-webhook")
	find(t, objs, "NetworkPolicy", "argo-completion-webhook")

	serving := find(t, objs, "Certificate", "argo-completion-webhook-serving")
	dns, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames")
	assert.ElementsMatch(t, []string{"argo-completion-webhook.argo-completion-webhook.svc", "argo-completion-webhook.argo-completion-webhook.svc.cluster.local"}, dns)
	isCA, _, _ := unstructured.NestedBool(serving.Object, "spec", "isCA")
	assert.False(t, isCA)
	renew, _, _ := unstructured.NestedString(serving.Object, "spec", "renewBefore")
	assert.NotEmpty(t, renew)
	secret, _, _ := unstructured.NestedString(serving.Object, "spec", "secretName")
	vol := spec["volumes"].([]any)[0].(map[string]any)["secret"].(map[string]any)
	assert.Equal(t, secret, vol["secretName"], "the Deployment mounts the serving certificate's Secret")

	mwc := find(t, objs, "MutatingWebhookConfiguration", "argo-completion-webhook")
	assert.Equal(t, "argo-completion-webhook/argo-completion-webhook-serving", mwc.GetAnnotations()["cert-manager.io/inject-ca-from"])
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	for _, h := range hooks {
		svc := h.(map[string]any)["clientConfig"].(map[string]any)["service"].(map[string]any)
		assert.Equal(t, "argo-completion-webhook", svc["name"])
		assert.Equal(t, "argo-completion-webhook", svc["namespace"])
		assert.Equal(t, "Ignore", h.(map[string]any)["failurePolicy"])
	}
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// number reads a YAML number, decoded as int64 or float64.
func number(v any) float64 {
	switch n := v.(type) {
	case int64:
		return float64(n)
	case float64:
		return n
	}
	return 0
}
