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

func TestManifestsAreAcceptedByServerSideDryRun(t *testing.T) {
	for _, dir := range []string{"deploy", "deploy/overlays/audit", "deploy/overlays/scoped"} {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
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
				err := c.Get(ctx, client.ObjectKeyFromObject(o), o.DeepCopy())
				if apierrors.IsNotFound(err) {
					require.NoError(t, c.Create(ctx, o.DeepCopy(), client.DryRunAll), "dry-run %s", o.GetName())
					require.NoError(t, c.Create(ctx, o.DeepCopy()))
				}
			}
			// The scoped overlay's Roles live in Argo's namespace, which Argo's install creates.
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

// ensureNamespace creates namespace name unless it exists.
func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	err := admin.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err, "creating namespace %s", name)
	}
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
	objs := render(t, "deploy")
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

	audit := find(t, render(t, "deploy/overlays/audit"), "Deployment", "argo-completion-webhook")
	auditArgs, _, _ := unstructured.NestedSlice(audit.Object, "spec", "template", "spec", "containers")
	a := strings.Join(toStrings(auditArgs[0].(map[string]any)["args"]), " ")
	assert.Contains(t, a, "--mode=audit")
	assert.NotContains(t, a, "--mode=enforce")
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
