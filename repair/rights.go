package repair

import (
	"context"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// executorVerbs are what Argo's executor Role grants on workflowtaskresults
// (manifests/quick-start/base/executor/emissary/executor-role.yaml): create the result, patch it
// (outputs, then the label).
var executorVerbs = []string{"create", "patch"}

// rightsOf asks the API server whether service account sa of namespace ns may create and patch
// workflowtaskresults there (R2). It asks with LocalSubjectAccessReviews: namespaced, so a Role
// in that namespace can grant them (the scoped install's), and a ClusterRole everywhere. The
// answer is the authorizer's, whatever grants it (RoleBindings to the account or to its groups).
// Answers are kept for the rest of the first pass (one per account, few); fresh asks again. A
// review that cannot be made leaves the rights unknown, with the reason, and never fails the run.
func (r *run) rightsOf(ctx context.Context, ns, sa string, fresh bool) rules.ExecutorRights {
	key := ns + "/" + sa
	if got, ok := r.rights[key]; ok && !fresh {
		return got
	}
	var out rules.ExecutorRights
	for _, verb := range executorVerbs {
		review := &authorizationv1.LocalSubjectAccessReview{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns},
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   "system:serviceaccount:" + ns + ":" + sa,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: ns, Verb: verb, Group: "argoproj.io", Resource: "workflowtaskresults"},
			},
		}
		if err := r.c.Create(ctx, review); err != nil {
			reason := err.Error()
			if apierrors.IsForbidden(err) {
				reason = "the repair may not create localsubjectaccessreviews in " + ns + " (deploy/base/repair-cronjob.yaml grants it)"
			}
			out = rules.ExecutorRights{Error: reason}
			break
		}
		switch verb {
		case "create":
			out.Create = review.Status.Allowed
		case "patch":
			out.Patch = review.Status.Allowed
		}
	}
	r.rights[key] = out
	return out
}
