package manifests

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// NameLabel is the label every Bulwark pod carries with its service name.
const NameLabel = "app.kubernetes.io/name"

// SingletonAnnotation marks a Deployment that must run as one replica (the
// audit ingester is the log's only writer); its value says why.
const SingletonAnnotation = "bulwark.dev/singleton"

// DrainSeconds is the platform server's default graceful-shutdown time
// (platform.ServerParams.ShutdownTimeout): terminationGracePeriodSeconds must
// cover the preStop sleep plus this, or plus the DrainAnnotation's value when
// a service drains longer.
const DrainSeconds = 30

// DrainAnnotation on a Deployment gives its drain time in seconds when it is
// not DrainSeconds.
const DrainAnnotation = "bulwark.dev/drain-seconds"

// Drain returns d's drain time in seconds.
func Drain(d appsv1.Deployment) (int64, error) {
	v, ok := d.Annotations[DrainAnnotation]
	if !ok {
		return DrainSeconds, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("annotation %s=%q is not a positive number of seconds", DrainAnnotation, v)
	}
	return n, nil
}

// ServiceName returns the Deployment's service name (its NameLabel).
func ServiceName(d appsv1.Deployment) string { return d.Spec.Template.Labels[NameLabel] }

// IsSingleton reports whether d is marked to run as one replica.
func IsSingleton(d appsv1.Deployment) bool {
	return d.Annotations[SingletonAnnotation] != ""
}

// CheckDeployment returns every rule d breaks: probes on the gRPC port,
// requests and limits, non-root with a read-only root filesystem and no
// privilege escalation, a ServiceAccount, and a grace period that covers the drain.
func CheckDeployment(d appsv1.Deployment) []error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("deployment %s: "+format, append([]any{d.Name}, a...)...))
	}
	pod := d.Spec.Template.Spec
	if ServiceName(d) == "" {
		bad("pod template has no %s label", NameLabel)
	}
	if pod.ServiceAccountName == "" || pod.ServiceAccountName == "default" {
		bad("needs its own serviceAccountName")
	}
	psc := pod.SecurityContext
	podNonRoot := psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("pod seccompProfile must be RuntimeDefault")
	}
	if len(pod.Containers) == 0 {
		bad("no containers")
	}
	preStop := int64(0)
	for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
		cbad := func(format string, a ...any) { bad("container %s: "+format, append([]any{c.Name}, a...)...) }
		sc := c.SecurityContext
		nonRoot := podNonRoot || (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)
		if !nonRoot || (sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0) || (psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0) {
			cbad("must run as non-root (runAsNonRoot: true, no uid 0)")
		}
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			cbad("needs readOnlyRootFilesystem: true")
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			cbad("needs allowPrivilegeEscalation: false")
		}
		if sc != nil && sc.Privileged != nil && *sc.Privileged {
			cbad("must not be privileged")
		}
		if sc == nil || sc.Capabilities == nil || !dropsAll(sc.Capabilities.Drop) || len(sc.Capabilities.Add) > 0 {
			cbad("must drop ALL capabilities and add none")
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				cbad("no %s request", r)
			}
			if _, ok := c.Resources.Limits[r]; !ok {
				cbad("no %s limit", r)
			}
		}
		for res, lim := range c.Resources.Limits {
			if req, ok := c.Resources.Requests[res]; ok && req.Cmp(lim) > 0 {
				cbad("%s request above its limit", res)
			}
		}
		if err := CheckImage(c.Image); err != nil {
			cbad("%v", err)
		}
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			preStop = max(preStop, c.Lifecycle.PreStop.Sleep.Seconds)
		}
	}
	for _, c := range pod.Containers {
		cbad := func(format string, a ...any) { bad("container %s: "+format, append([]any{c.Name}, a...)...) }
		port := grpcPort(c)
		if port == 0 {
			cbad("no container port named grpc")
		}
		for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			switch {
			case p == nil:
				cbad("no %s probe", name)
			case p.GRPC == nil:
				cbad("%s probe must use gRPC health", name)
			case p.GRPC.Port != port:
				cbad("%s probe checks port %d, the service listens on %d", name, p.GRPC.Port, port)
			}
		}
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	drain, err := Drain(d)
	if err != nil {
		bad("%v", err)
	}
	if need := preStop + drain; grace <= need {
		bad("terminationGracePeriodSeconds %d does not cover preStop %ds + drain %ds with a margin", grace, preStop, drain)
	}
	return errs
}

func dropsAll(caps []corev1.Capability) bool {
	for _, c := range caps {
		if strings.EqualFold(string(c), "ALL") {
			return true
		}
	}
	return false
}

func grpcPort(c corev1.Container) int32 {
	for _, p := range c.Ports {
		if p.Name == "grpc" {
			return p.ContainerPort
		}
	}
	return 0
}

// CheckImage rejects an image without a pinned tag or digest, or tagged latest.
func CheckImage(image string) error {
	if _, digest, ok := strings.Cut(image, "@"); ok {
		if !strings.HasPrefix(digest, "sha256:") {
			return fmt.Errorf("image %q: malformed digest", image)
		}
		return nil
	}
	lastSlash := strings.LastIndex(image, "/")
	colon := strings.LastIndex(image, ":")
	if colon <= lastSlash {
		return fmt.Errorf("image %q has no tag (an implicit :latest)", image)
	}
	if image[colon+1:] == "latest" {
		return fmt.Errorf("image %q uses :latest", image)
	}
	return nil
}

// CheckSet returns every rule the rendered overlay breaks: each Deployment
// passes CheckDeployment and has its ServiceAccount, Service,
// HorizontalPodAutoscaler, PodDisruptionBudget and a NetworkPolicy of its own;
// the namespace denies all traffic by default.
func CheckSet(s *Set) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	sas := map[string]bool{}
	for _, sa := range s.ServiceAccounts {
		sas[sa.Namespace+"/"+sa.Name] = true
	}
	defaultDeny := map[string]bool{}
	for _, p := range s.NetworkPolicies {
		if len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 &&
			len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 && len(p.Spec.PolicyTypes) == 2 {
			defaultDeny[p.Namespace] = true
		}
	}
	for _, d := range s.Deployments {
		errs = append(errs, CheckDeployment(d)...)
		podLabels := labels.Set(d.Spec.Template.Labels)
		if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil || !sel.Matches(podLabels) {
			bad("deployment %s: selector does not match its pod template", d.Name)
		}
		if sa := d.Spec.Template.Spec.ServiceAccountName; !sas[d.Namespace+"/"+sa] {
			bad("deployment %s: ServiceAccount %q is not in the overlay", d.Name, sa)
		}
		if !defaultDeny[d.Namespace] {
			bad("namespace %q has no default-deny NetworkPolicy", d.Namespace)
		}
		if !hasHPA(s, d) {
			bad("deployment %s: no HorizontalPodAutoscaler targets it", d.Name)
		}
		if !hasPDB(s, d, podLabels) {
			bad("deployment %s: no PodDisruptionBudget selects its pods", d.Name)
		}
		if !hasService(s, d, podLabels) {
			bad("deployment %s: no Service selects its pods", d.Name)
		}
		if !hasOwnNetworkPolicy(s, d, podLabels) {
			bad("deployment %s: no NetworkPolicy of its own (beyond default-deny) selects its pods", d.Name)
		}
		if IsSingleton(d) && (d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType) {
			bad("deployment %s: a singleton runs 1 replica with the Recreate strategy, so two writers never overlap", d.Name)
		}
	}
	return errs
}

func hasHPA(s *Set, d appsv1.Deployment) bool {
	for _, h := range s.HPAs {
		r := h.Spec.ScaleTargetRef
		if h.Namespace == d.Namespace && r.Kind == "Deployment" && r.Name == d.Name && strings.HasPrefix(r.APIVersion, "apps/") {
			return true
		}
	}
	return false
}

func hasPDB(s *Set, d appsv1.Deployment, podLabels labels.Set) bool {
	for _, p := range s.PDBs {
		if p.Namespace == d.Namespace && selectsNonEmpty(p.Spec.Selector, podLabels) {
			return true
		}
	}
	return false
}

func hasService(s *Set, d appsv1.Deployment, podLabels labels.Set) bool {
	for _, svc := range s.Services {
		if svc.Namespace == d.Namespace && len(svc.Spec.Selector) > 0 &&
			labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			return true
		}
	}
	return false
}

func hasOwnNetworkPolicy(s *Set, d appsv1.Deployment, podLabels labels.Set) bool {
	for _, p := range s.NetworkPolicies {
		if p.Namespace == d.Namespace && selectsNonEmpty(&p.Spec.PodSelector, podLabels) {
			return true
		}
	}
	return false
}

func selectsNonEmpty(sel *metav1.LabelSelector, l labels.Set) bool {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return false
	}
	return selects(sel, l)
}

// CheckProd returns the production rules d breaks: a stateless service runs
// at least three replicas (Deployment and HPA minimum) spread over nodes.
func CheckProd(s *Set) []error {
	var errs []error
	for _, d := range s.Deployments {
		if IsSingleton(d) {
			continue
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 3 {
			errs = append(errs, fmt.Errorf("deployment %s: prod needs at least 3 replicas", d.Name))
		}
		for _, h := range s.HPAs {
			if h.Spec.ScaleTargetRef.Name == d.Name && (h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 3) {
				errs = append(errs, fmt.Errorf("hpa %s: prod needs minReplicas >= 3", h.Name))
			}
		}
		if !spreadsOverNodes(d) {
			errs = append(errs, fmt.Errorf("deployment %s: prod needs pod anti-affinity or a topology spread over kubernetes.io/hostname", d.Name))
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
			if req.Cmp(lim) != 0 {
				errs = append(errs, fmt.Errorf("deployment %s: prod sets the memory request equal to the limit (no overcommit)", d.Name))
			}
		}
	}
	return errs
}

func spreadsOverNodes(d appsv1.Deployment) bool {
	pod := d.Spec.Template.Spec
	self := labels.Set(d.Spec.Template.Labels)
	for _, t := range pod.TopologySpreadConstraints {
		if t.TopologyKey == corev1.LabelHostname && selects(t.LabelSelector, self) {
			return true
		}
	}
	if a := pod.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if t.TopologyKey == corev1.LabelHostname && selects(t.LabelSelector, self) {
				return true
			}
		}
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			if w.PodAffinityTerm.TopologyKey == corev1.LabelHostname && selects(w.PodAffinityTerm.LabelSelector, self) {
				return true
			}
		}
	}
	return false
}

// ContainerEnv returns the names of the variables a Deployment's containers set, sorted.
func ContainerEnv(d appsv1.Deployment) []string {
	seen := map[string]bool{}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			seen[e.Name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// RuntimeEnv are variables read by the Go runtime or the Vault client library
// rather than by a Bulwark config struct.
var RuntimeEnv = []string{"GOMEMLIMIT", "GOMAXPROCS", "GODEBUG", "VAULT_CACERT"}

// CheckEnv returns the settings d gets wrong against vars, the variables its
// service reads (from ServiceEnv): a variable the service does not read, a
// required one left unset, or envFrom, which would hide variables from this check.
func CheckEnv(d appsv1.Deployment, vars map[string]EnvVar) []error {
	var errs []error
	for _, c := range d.Spec.Template.Spec.Containers {
		if len(c.EnvFrom) > 0 {
			errs = append(errs, fmt.Errorf("%s: container %s uses envFrom, which this check cannot see; set variables one by one", d.Name, c.Name))
		}
	}
	set := ContainerEnv(d)
	for _, name := range set {
		if slices.Contains(RuntimeEnv, name) {
			continue
		}
		if _, ok := vars[name]; !ok {
			errs = append(errs, fmt.Errorf("%s sets %s, which services/%s does not read", d.Name, name, ServiceName(d)))
		}
	}
	var required []string
	for _, v := range vars {
		if v.Required && !slices.Contains(set, v.Name) {
			required = append(required, fmt.Sprintf("%s does not set %s, which %s requires", d.Name, v.Name, v.Field))
		}
	}
	sort.Strings(required)
	for _, r := range required {
		errs = append(errs, errors.New(r))
	}
	return errs
}
