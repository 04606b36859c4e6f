package manifests

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Endpoint is one end of a connection: a pod (Namespace and PodLabels set) or
// an address outside the cluster (IP set, PodLabels nil).
type Endpoint struct {
	// Name identifies the endpoint in reports ("gateway", "internet").
	Name string
	// Namespace and NamespaceLabels locate a pod; NamespaceLabels should carry
	// kubernetes.io/metadata.name as the API server sets it.
	Namespace       string
	NamespaceLabels map[string]string
	// PodLabels are the pod's labels; nil for an address outside the cluster.
	PodLabels map[string]string
	// IP is the address of an endpoint outside the cluster.
	IP string
}

// IsPod reports whether the endpoint is a pod.
func (e Endpoint) IsPod() bool { return e.PodLabels != nil }

// Target is a destination endpoint with the port a client connects to.
type Target struct {
	Endpoint
	Port     int32
	Protocol corev1.Protocol
}

// Allowed reports whether the policies let src open a connection to dst,
// following the NetworkPolicy semantics: a pod selected by a policy of a given
// direction is isolated in that direction and accepts only what some rule of
// such a policy allows; a pod no policy selects (or one outside the policies'
// namespaces) is not isolated. Named ports are not resolved: the rules here
// use numbers, and a named port returns an error.
func Allowed(policies []networkingv1.NetworkPolicy, src Endpoint, dst Target) (bool, error) {
	out, err := egressAllowed(policies, src, dst)
	if err != nil || !out {
		return false, err
	}
	return ingressAllowed(policies, src, dst)
}

func egressAllowed(policies []networkingv1.NetworkPolicy, src Endpoint, dst Target) (bool, error) {
	if !src.IsPod() {
		return true, nil
	}
	isolated := false
	for _, p := range policies {
		if !applies(p, src, networkingv1.PolicyTypeEgress) {
			continue
		}
		isolated = true
		for _, rule := range p.Spec.Egress {
			ok, err := portsMatch(rule.Ports, dst.Port, dst.Protocol)
			if err != nil {
				return false, fmt.Errorf("policy %s: %w", p.Name, err)
			}
			if ok && peersMatch(rule.To, p.Namespace, dst.Endpoint) {
				return true, nil
			}
		}
	}
	return !isolated, nil
}

func ingressAllowed(policies []networkingv1.NetworkPolicy, src Endpoint, dst Target) (bool, error) {
	if !dst.IsPod() {
		return true, nil
	}
	isolated := false
	for _, p := range policies {
		if !applies(p, dst.Endpoint, networkingv1.PolicyTypeIngress) {
			continue
		}
		isolated = true
		for _, rule := range p.Spec.Ingress {
			ok, err := portsMatch(rule.Ports, dst.Port, dst.Protocol)
			if err != nil {
				return false, fmt.Errorf("policy %s: %w", p.Name, err)
			}
			if ok && peersMatch(rule.From, p.Namespace, src) {
				return true, nil
			}
		}
	}
	return !isolated, nil
}

// applies reports whether policy p selects pod e for direction typ.
func applies(p networkingv1.NetworkPolicy, e Endpoint, typ networkingv1.PolicyType) bool {
	if p.Namespace != e.Namespace || !e.IsPod() {
		return false
	}
	if !selects(&p.Spec.PodSelector, e.PodLabels) {
		return false
	}
	types := p.Spec.PolicyTypes
	if len(types) == 0 { // the API server's default
		types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(p.Spec.Egress) > 0 {
			types = append(types, networkingv1.PolicyTypeEgress)
		}
	}
	return slices.Contains(types, typ)
}

// selects matches a label selector; a nil selector selects nothing, an empty one everything.
func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(l))
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, port int32, proto corev1.Protocol) (bool, error) {
	if len(ports) == 0 {
		return true, nil
	}
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, p := range ports {
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pp != proto {
			continue
		}
		if p.Port == nil {
			return true, nil
		}
		if p.Port.StrVal != "" {
			return false, fmt.Errorf("named port %q: use numbers so the graph can be checked", p.Port.StrVal)
		}
		lo, hi := p.Port.IntVal, p.Port.IntVal
		if p.EndPort != nil {
			hi = *p.EndPort
		}
		if port >= lo && port <= hi {
			return true, nil
		}
	}
	return false, nil
}

// peersMatch reports whether any peer selects e; an empty peer list matches all.
func peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNS string, e Endpoint) bool {
	if len(peers) == 0 {
		return true
	}
	for _, peer := range peers {
		if peerMatches(peer, policyNS, e) {
			return true
		}
	}
	return false
}

func peerMatches(peer networkingv1.NetworkPolicyPeer, policyNS string, e Endpoint) bool {
	if peer.IPBlock != nil {
		// ipBlock is meant for addresses outside the cluster; pod IPs are not
		// modelled, so a pod never matches one.
		return !e.IsPod() && inBlock(peer.IPBlock, e.IP)
	}
	if !e.IsPod() {
		return false
	}
	if peer.NamespaceSelector == nil {
		if e.Namespace != policyNS {
			return false
		}
	} else if !selects(peer.NamespaceSelector, e.NamespaceLabels) {
		return false
	}
	if peer.PodSelector == nil {
		return true
	}
	return selects(peer.PodSelector, e.PodLabels)
}

func inBlock(b *networkingv1.IPBlock, ip string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !cidr.Contains(addr) {
		return false
	}
	for _, ex := range b.Except {
		if p, err := netip.ParsePrefix(ex); err == nil && p.Contains(addr) {
			return false
		}
	}
	return true
}
