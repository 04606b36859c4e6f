// Package manifests renders Bulwark's kustomize overlays offline and checks them:
// every object decodes strictly into the Kubernetes API types, the workloads
// follow the deployment rules (probes, limits, non-root, autoscaling,
// disruption budgets), the NetworkPolicies allow exactly the calls of the
// architecture, and the environment variables the manifests set are ones the
// services really read. It is a test harness for deploy/; nothing ships it.
package manifests

import (
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Set is one rendered overlay, decoded into typed objects by kind.
type Set struct {
	Namespaces      []corev1.Namespace
	Deployments     []appsv1.Deployment
	Services        []corev1.Service
	ServiceAccounts []corev1.ServiceAccount
	HPAs            []autoscalingv2.HorizontalPodAutoscaler
	PDBs            []policyv1.PodDisruptionBudget
	NetworkPolicies []networkingv1.NetworkPolicy
	PriorityClasses []schedulingv1.PriorityClass
	// Objects counts every rendered object, whatever its kind.
	Objects int
}

// ErrUnsupportedKind reports a rendered object whose kind this package does not
// know how to check; add it to newScheme and Set when a new kind is wanted.
var ErrUnsupportedKind = errors.New("unsupported kind")

func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme, schedulingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Render builds the kustomization in dir from the files on disk, the way
// `kubectl apply -k dir` would, and strictly decodes every object: an unknown
// or duplicated field, a malformed quantity or an unknown kind is an error.
func Render(dir string) (*Set, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	scheme, err := newScheme()
	if err != nil {
		return nil, err
	}
	dec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
	set := &Set{}
	var errs []error
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		obj, _, err := dec.Decode(y, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", r.GetKind(), r.GetName(), err))
			continue
		}
		set.Objects++
		switch o := obj.(type) {
		case *corev1.Namespace:
			set.Namespaces = append(set.Namespaces, *o)
		case *appsv1.Deployment:
			set.Deployments = append(set.Deployments, *o)
		case *corev1.Service:
			set.Services = append(set.Services, *o)
		case *corev1.ServiceAccount:
			set.ServiceAccounts = append(set.ServiceAccounts, *o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			set.HPAs = append(set.HPAs, *o)
		case *policyv1.PodDisruptionBudget:
			set.PDBs = append(set.PDBs, *o)
		case *networkingv1.NetworkPolicy:
			set.NetworkPolicies = append(set.NetworkPolicies, *o)
		case *schedulingv1.PriorityClass:
			set.PriorityClasses = append(set.PriorityClasses, *o)
		default:
			errs = append(errs, fmt.Errorf("%s/%s: %w", r.GetKind(), r.GetName(), ErrUnsupportedKind))
		}
	}
	return set, errors.Join(errs...)
}
