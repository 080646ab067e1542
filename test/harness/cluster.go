package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
)

// The users the cluster's components run as.
const (
	// ControllerUser is Argo's workflow-controller (full rights, as its ClusterRole grants).
	ControllerUser = "argo-controller"
	// WebhookUser is the webhook: it may only get, list and watch pods, and get and list task results.
	WebhookUser = "argo-completion-webhook"
)

// Cluster is the control plane with Argo's CRDs, an admin client, and kubeconfigs for the
// controller and the webhook users.
type Cluster struct {
	Env                  *envtest.Environment
	Config               *rest.Config
	Admin                client.Client
	ControllerKubeconfig string
	WebhookKubeconfig    string
}

// Scheme holds the built-in types the harness reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, rbacv1.AddToScheme, admissionregistrationv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err) // registering built-in types cannot fail
		}
	}
	return s
}

// StartCluster starts the control plane and creates the users and the cluster-wide RBAC: the
// webhook's ClusterRole (pods: get, list, watch; workflowtaskresults: get, list) and Argo's executor role (workflowtaskresults:
// create, patch), bound per namespace by SetupNamespace. Kubeconfigs are written under dir.
func StartCluster(dir string) (*Cluster, error) {
	env, cfg, err := controlplane.StartEnv()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Env: env, Config: cfg}
	if err := c.setup(dir); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) setup(dir string) error {
	var err error
	if c.Admin, err = client.New(c.Config, client.Options{Scheme: Scheme()}); err != nil {
		return err
	}
	if c.ControllerKubeconfig, err = c.kubeconfig(dir, envtest.User{Name: ControllerUser, Groups: []string{"system:masters"}}); err != nil {
		return err
	}
	if c.WebhookKubeconfig, err = c.kubeconfig(dir, envtest.User{Name: WebhookUser}); err != nil {
		return err
	}
	for _, o := range []client.Object{
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: WebhookUser},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
				// Rule B2 GETs each incomplete node's task result (deploy/base/rbac.yaml).
				{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtaskresults"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: WebhookUser},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: WebhookUser},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: WebhookUser}}},
		// Argo's executor Role (manifests/quick-start/base/executor/emissary/executor-role.yaml).
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "argo-executor"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtaskresults"}, Verbs: []string{"create", "patch"}}}},
	} {
		if err := c.Admin.Create(context.Background(), o); err != nil {
			return fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	return nil
}

func (c *Cluster) kubeconfig(dir string, u envtest.User) (string, error) {
	user, err := c.Env.AddUser(u, nil)
	if err != nil {
		return "", err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, u.Name+".kubeconfig")
	return path, os.WriteFile(path, kc, 0o600)
}

// SetupNamespace creates ns with a default service account bound to Argo's executor role.
func (c *Cluster) SetupNamespace(ctx context.Context, ns string) error {
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "argo-executor", Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "argo-executor"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}},
		},
	} {
		if err := c.Admin.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %s %s: %w", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
		}
	}
	return nil
}

// Stop stops the control plane.
func (c *Cluster) Stop() error {
	return c.Env.Stop()
}
