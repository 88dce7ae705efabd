// Command validate checks the Kubernetes objects `helm template` renders for the
// genesys-relay chart, with no cluster: every YAML document is decoded strictly (unknown or
// duplicate fields, wrong types and case-mismatched keys are errors) into its Kubernetes API
// type (k8s.io/api), prometheus-operator's ServiceMonitor / PrometheusRule, or KEDA's
// ScaledObject (see ./keda), and an apiVersion/kind it does not know is an error. Then the
// objects are checked against each other the way the API server and the controllers would
// use them: names, selectors that select something, ports that exist, autoscaler targets,
// disruption budgets that allow an eviction, and a termination grace period longer than the
// relay's worst-case stop.
//
// Usage: validate [-rules-out FILE] [-require Kind,...] rendered.yaml...
// Exit status 1 with one line per problem.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"genesys-relay/deploy/validate/keda"
)

// The relay's stop after SIGTERM, beyond RELAY_SHUTDOWN_TIMEOUT (the drain): the final
// offset commit is bounded by FINAL_COMMIT_TIMEOUT (src/kafka/consumer.rs) and the producer
// flush by the 10 s in RunningRelay::wait (src/app.rs).
const (
	finalCommitSeconds   = 10
	producerFlushSeconds = 10
)

// The relay's commands (src/main.rs) a long-running container may run.
var relayCommands = map[string]bool{"serve": true, "ingress": true, "worker": true, "listen": true}

// Metadata keys of KEDA's kafka scaler (https://keda.sh/docs/2.22/scalers/apache-kafka/,
// "Parameter list" and "Authentication Parameters"): a misspelt key is silently ignored by
// KEDA, so it is an error here.
var kafkaScalerKeys = map[string]bool{
	"bootstrapServers": true, "consumerGroup": true, "topic": true, "lagThreshold": true,
	"activationLagThreshold": true, "offsetResetPolicy": true, "allowIdleConsumers": true,
	"scaleToZeroOnInvalidOffset": true, "excludePersistentLag": true, "version": true,
	"partitionLimitation": true, "limitToPartitionsWithLag": true, "ensureEvenDistributionOfPartitions": true,
	"sasl": true, "tls": true, "saslTokenProvider": true,
}

type object struct {
	source string // file:document index
	gvk    string // apiVersion/kind
	name   string
	obj    any
}

type checker struct {
	objects  []object
	problems []string
}

func (c *checker) fail(o object, format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf("%s %s %q: %s", o.source, o.gvk, o.name, fmt.Sprintf(format, args...)))
}

// newObject returns an empty typed object for apiVersion/kind, or nil when unknown.
func newObject(gvk string) any {
	switch gvk {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &monitoringv1.PrometheusRule{}
	case "keda.sh/v1alpha1/ScaledObject":
		return &keda.ScaledObject{}
	}
	return nil
}

func main() {
	rulesOut := flag.String("rules-out", "", "write the rendered PrometheusRule's groups here (for promtool check rules)")
	require := flag.String("require", "", "comma-separated kinds that must be rendered")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: validate [-rules-out FILE] [-require Kind,...] rendered.yaml...")
		os.Exit(2)
	}
	c := &checker{}
	for _, path := range flag.Args() {
		c.load(path)
	}
	c.crossCheck()
	if *require != "" {
		seen := map[string]bool{}
		for _, o := range c.objects {
			seen[o.gvk[strings.LastIndex(o.gvk, "/")+1:]] = true
		}
		for _, kind := range strings.Split(*require, ",") {
			if !seen[kind] {
				c.problems = append(c.problems, fmt.Sprintf("no %s rendered (required)", kind))
			}
		}
	}
	if *rulesOut != "" {
		c.writeRules(*rulesOut)
	}
	if len(c.problems) > 0 {
		for _, p := range c.problems {
			fmt.Fprintln(os.Stderr, p)
		}
		os.Exit(1)
	}
	kinds := map[string]int{}
	for _, o := range c.objects {
		kinds[o.gvk]++
	}
	var summary []string
	for k, n := range kinds {
		summary = append(summary, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(summary)
	fmt.Printf("valid: %d objects (%s)\n", len(c.objects), strings.Join(summary, ", "))
}

func (c *checker) load(path string) {
	f, err := os.Open(path)
	if err != nil {
		c.problems = append(c.problems, err.Error())
		return
	}
	defer f.Close()
	reader := k8syaml.NewYAMLReader(bufio.NewReader(f))
	for i := 0; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			c.problems = append(c.problems, fmt.Sprintf("%s: %v", path, err))
			return
		}
		c.decode(fmt.Sprintf("%s#%d", path, i), doc)
	}
}

func (c *checker) decode(source string, doc []byte) {
	// Duplicate keys in the YAML itself are errors (the strict YAML-to-JSON conversion).
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		c.problems = append(c.problems, fmt.Sprintf("%s: %v", source, err))
		return
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return // an empty document (only comments)
	}
	var meta metav1.TypeMeta
	if err := json.Unmarshal(js, &meta); err != nil {
		c.problems = append(c.problems, fmt.Sprintf("%s: not an object: %v", source, err))
		return
	}
	gvk := meta.APIVersion + "/" + meta.Kind
	o := object{source: source, gvk: gvk}
	typed := newObject(gvk)
	if typed == nil {
		c.fail(o, "unknown apiVersion/kind (not a type this validator knows)")
		return
	}
	strict, err := sigsjson.UnmarshalStrict(js, typed, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		c.fail(o, "does not decode: %v", err)
		return
	}
	for _, e := range strict {
		c.fail(o, "strict decoding: %v", e)
	}
	o.obj = typed
	if m, ok := typed.(metav1.Object); ok {
		o.name = m.GetName()
		c.checkMeta(o, m)
	}
	c.objects = append(c.objects, o)
}

func (c *checker) checkMeta(o object, m metav1.Object) {
	if m.GetName() == "" {
		c.fail(o, "metadata.name is empty")
	}
	nameCheck := validation.IsDNS1123Subdomain
	if strings.HasSuffix(o.gvk, "/Service") {
		nameCheck = validation.IsDNS1035Label
	}
	for _, e := range nameCheck(m.GetName()) {
		c.fail(o, "metadata.name: %s", e)
	}
	c.checkLabels(o, "metadata.labels", m.GetLabels())
	for k := range m.GetAnnotations() {
		for _, e := range validation.IsQualifiedName(k) {
			c.fail(o, "annotation key %q: %s", k, e)
		}
	}
}

func (c *checker) checkLabels(o object, where string, l map[string]string) {
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			c.fail(o, "%s key %q: %s", where, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			c.fail(o, "%s %q value %q: %s", where, k, v, e)
		}
	}
}

func find[T any](c *checker) []struct {
	o object
	v *T
} {
	var out []struct {
		o object
		v *T
	}
	for _, o := range c.objects {
		if v, ok := o.obj.(*T); ok {
			out = append(out, struct {
				o object
				v *T
			}{o, v})
		}
	}
	return out
}

func selectorOf(c *checker, o object, s *metav1.LabelSelector) labels.Selector {
	if s == nil {
		c.fail(o, "no selector")
		return labels.Nothing()
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		c.fail(o, "selector: %v", err)
		return labels.Nothing()
	}
	if sel.Empty() {
		c.fail(o, "empty selector selects every pod")
	}
	return sel
}

func (c *checker) crossCheck() {
	seen := map[string]string{}
	for _, o := range c.objects {
		key := o.gvk + "/" + o.name
		if prev, dup := seen[key]; dup {
			c.fail(o, "rendered twice (also %s)", prev)
		}
		seen[key] = o.source
	}
	configMaps := map[string]*corev1.ConfigMap{}
	for _, cm := range find[corev1.ConfigMap](c) {
		configMaps[cm.v.Name] = cm.v
		for k, v := range cm.v.Data {
			if strings.HasSuffix(k, ".json") && !json.Valid([]byte(v)) {
				c.fail(cm.o, "data %q is not valid JSON", k)
			}
		}
	}
	deployments := find[appsv1.Deployment](c)
	deploymentByName := map[string]*appsv1.Deployment{}
	for _, d := range deployments {
		deploymentByName[d.v.Name] = d.v
		c.checkDeployment(d.o, d.v, configMaps)
	}
	autoscaled := map[string]bool{}
	for _, h := range find[autoscalingv2.HorizontalPodAutoscaler](c) {
		ref := h.v.Spec.ScaleTargetRef
		d := deploymentByName[ref.Name]
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || d == nil {
			c.fail(h.o, "scaleTargetRef %s %s/%s is not a rendered Deployment", ref.APIVersion, ref.Kind, ref.Name)
			continue
		}
		autoscaled[ref.Name] = true
		if h.v.Spec.MinReplicas != nil && *h.v.Spec.MinReplicas > h.v.Spec.MaxReplicas {
			c.fail(h.o, "minReplicas %d > maxReplicas %d", *h.v.Spec.MinReplicas, h.v.Spec.MaxReplicas)
		}
		for _, m := range h.v.Spec.Metrics {
			if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil {
				for _, ct := range d.Spec.Template.Spec.Containers {
					if _, ok := ct.Resources.Requests[m.Resource.Name]; !ok {
						c.fail(h.o, "scales on %s utilization but container %q requests no %s", m.Resource.Name, ct.Name, m.Resource.Name)
					}
				}
			}
		}
	}
	for _, s := range find[keda.ScaledObject](c) {
		ref := s.v.Spec.ScaleTargetRef
		if ref == nil || deploymentByName[ref.Name] == nil || (ref.Kind != "" && ref.Kind != "Deployment") {
			c.fail(s.o, "scaleTargetRef is not a rendered Deployment")
			continue
		}
		if autoscaled[ref.Name] {
			c.fail(s.o, "Deployment %q already has an autoscaler", ref.Name)
		}
		autoscaled[ref.Name] = true
		minR, maxR := int32(0), int32(100) // KEDA's defaults
		if s.v.Spec.MinReplicaCount != nil {
			minR = *s.v.Spec.MinReplicaCount
		}
		if s.v.Spec.MaxReplicaCount != nil {
			maxR = *s.v.Spec.MaxReplicaCount
		}
		if minR > maxR || maxR < 1 {
			c.fail(s.o, "minReplicaCount %d, maxReplicaCount %d", minR, maxR)
		}
		if len(s.v.Spec.Triggers) == 0 {
			c.fail(s.o, "no triggers")
		}
		for _, t := range s.v.Spec.Triggers {
			if t.Type != "kafka" {
				continue
			}
			for k := range t.Metadata {
				if !kafkaScalerKeys[k] {
					c.fail(s.o, "kafka trigger metadata %q is not a parameter of KEDA's kafka scaler", k)
				}
			}
			for _, k := range []string{"bootstrapServers", "consumerGroup"} {
				if t.Metadata[k] == "" {
					c.fail(s.o, "kafka trigger without %s", k)
				}
			}
			if v, ok := t.Metadata["lagThreshold"]; ok {
				if n, err := strconv.Atoi(v); err != nil || n < 1 {
					c.fail(s.o, "lagThreshold %q is not a positive integer", v)
				}
			}
		}
	}
	for name := range autoscaled {
		if d := deploymentByName[name]; d != nil && d.Spec.Replicas != nil {
			for _, dd := range deployments {
				if dd.v == d {
					c.fail(dd.o, "sets spec.replicas although an autoscaler owns it (every upgrade would reset the scale)")
				}
			}
		}
	}
	for _, p := range find[policyv1.PodDisruptionBudget](c) {
		sel := selectorOf(c, p.o, p.v.Spec.Selector)
		matched := false
		for _, d := range deployments {
			if !sel.Matches(labels.Set(d.v.Spec.Template.Labels)) {
				continue
			}
			matched = true
			replicas := int32(1)
			if d.v.Spec.Replicas != nil {
				replicas = *d.v.Spec.Replicas
			}
			if autoscaled[d.v.Name] {
				continue
			}
			if p.v.Spec.MinAvailable != nil && p.v.Spec.MinAvailable.Type == intstr.Int && p.v.Spec.MinAvailable.IntVal >= replicas {
				c.fail(p.o, "minAvailable %d with %d replicas of %q: no pod can ever be evicted (node drains block)", p.v.Spec.MinAvailable.IntVal, replicas, d.v.Name)
			}
		}
		if !matched {
			c.fail(p.o, "selects no rendered Deployment's pods")
		}
		if (p.v.Spec.MinAvailable == nil) == (p.v.Spec.MaxUnavailable == nil) {
			c.fail(p.o, "exactly one of minAvailable and maxUnavailable must be set")
		}
	}
	services := find[corev1.Service](c)
	for _, s := range services {
		if len(s.v.Spec.Selector) == 0 {
			c.fail(s.o, "no selector")
			continue
		}
		sel := labels.SelectorFromSet(s.v.Spec.Selector)
		var pods []*corev1.PodSpec
		for _, d := range deployments {
			if sel.Matches(labels.Set(d.v.Spec.Template.Labels)) {
				pods = append(pods, &d.v.Spec.Template.Spec)
			}
		}
		if len(pods) == 0 {
			c.fail(s.o, "selects no rendered Deployment's pods")
		}
		for _, port := range s.v.Spec.Ports {
			for _, e := range validation.IsValidPortName(port.Name) {
				c.fail(s.o, "port name %q: %s", port.Name, e)
			}
			if port.TargetPort.Type == intstr.String {
				for _, pod := range pods {
					if !podHasPort(pod, port.TargetPort.StrVal) {
						c.fail(s.o, "targetPort %q is not a container port of every selected pod", port.TargetPort.StrVal)
					}
				}
			}
		}
	}
	serviceByName := map[string]*corev1.Service{}
	for _, s := range services {
		serviceByName[s.v.Name] = s.v
	}
	for _, in := range find[networkingv1.Ingress](c) {
		for _, rule := range in.v.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				if p.PathType == nil {
					c.fail(in.o, "path %q without pathType", p.Path)
				}
				b := p.Backend.Service
				if b == nil || serviceByName[b.Name] == nil {
					c.fail(in.o, "path %q: backend is not a rendered Service", p.Path)
					continue
				}
				if !serviceHasPort(serviceByName[b.Name], b.Port) {
					c.fail(in.o, "path %q: Service %q has no port %v", p.Path, b.Name, b.Port)
				}
			}
		}
	}
	for _, sm := range find[monitoringv1.ServiceMonitor](c) {
		sel := selectorOf(c, sm.o, &sm.v.Spec.Selector)
		var matched []*corev1.Service
		for _, s := range services {
			if sel.Matches(labels.Set(s.v.Labels)) {
				matched = append(matched, s.v)
			}
		}
		if len(matched) == 0 {
			c.fail(sm.o, "selects no rendered Service")
		}
		if jl := sm.v.Spec.JobLabel; jl != "" {
			for _, s := range matched {
				if s.Labels[jl] == "" {
					c.fail(sm.o, "jobLabel %q is not a label of Service %q", jl, s.Name)
				}
			}
		}
		if len(sm.v.Spec.Endpoints) == 0 {
			c.fail(sm.o, "no endpoints")
		}
		for _, ep := range sm.v.Spec.Endpoints {
			if ep.Port == "" {
				c.fail(sm.o, "endpoint without a port name")
				continue
			}
			for _, s := range matched {
				if !serviceHasPort(s, networkingv1.ServiceBackendPort{Name: ep.Port}) {
					c.fail(sm.o, "endpoint port %q is not a port of Service %q", ep.Port, s.Name)
				}
			}
		}
	}
	for _, r := range find[monitoringv1.PrometheusRule](c) {
		if len(r.v.Spec.Groups) == 0 {
			c.fail(r.o, "no rule groups")
		}
		for _, g := range r.v.Spec.Groups {
			for _, rule := range g.Rules {
				if rule.Alert != "" && rule.Annotations["runbook"] == "" && rule.Annotations["runbook_url"] == "" {
					c.fail(r.o, "alert %s has no runbook annotation", rule.Alert)
				}
			}
		}
	}
}

func podHasPort(pod *corev1.PodSpec, name string) bool {
	for _, ct := range pod.Containers {
		for _, p := range ct.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func serviceHasPort(s *corev1.Service, port networkingv1.ServiceBackendPort) bool {
	for _, p := range s.Spec.Ports {
		if (port.Name != "" && p.Name == port.Name) || (port.Name == "" && p.Port == port.Number) {
			return true
		}
	}
	return false
}

func (c *checker) checkDeployment(o object, d *appsv1.Deployment, configMaps map[string]*corev1.ConfigMap) {
	sel := selectorOf(c, o, d.Spec.Selector)
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		c.fail(o, "spec.selector does not match the pod template's labels")
	}
	c.checkLabels(o, "spec.template.metadata.labels", d.Spec.Template.Labels)
	pod := &d.Spec.Template.Spec
	if len(pod.Containers) == 0 {
		c.fail(o, "no containers")
	}
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && configMaps[v.ConfigMap.Name] == nil && (v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional) {
			c.fail(o, "volume %q: ConfigMap %q is not rendered", v.Name, v.ConfigMap.Name)
		}
	}
	for _, ct := range pod.Containers {
		for _, e := range validation.IsDNS1123Label(ct.Name) {
			c.fail(o, "container name %q: %s", ct.Name, e)
		}
		if ct.Image == "" {
			c.fail(o, "container %q has no image", ct.Name)
		}
		ports := map[string]bool{}
		for _, p := range ct.Ports {
			for _, e := range validation.IsValidPortName(p.Name) {
				c.fail(o, "container %q port name %q: %s", ct.Name, p.Name, e)
			}
			if ports[p.Name] {
				c.fail(o, "container %q declares port %q twice", ct.Name, p.Name)
			}
			ports[p.Name] = true
		}
		for _, probe := range []struct {
			name string
			p    *corev1.Probe
		}{{"liveness", ct.LivenessProbe}, {"readiness", ct.ReadinessProbe}, {"startup", ct.StartupProbe}} {
			if probe.p == nil || probe.p.HTTPGet == nil {
				continue
			}
			if port := probe.p.HTTPGet.Port; port.Type == intstr.String && !ports[port.StrVal] {
				c.fail(o, "container %q %s probe: port %q is not declared", ct.Name, probe.name, port.StrVal)
			}
			if !strings.HasPrefix(probe.p.HTTPGet.Path, "/") {
				c.fail(o, "container %q %s probe: path %q", ct.Name, probe.name, probe.p.HTTPGet.Path)
			}
		}
		env := map[string]string{}
		for _, ef := range ct.EnvFrom {
			if ef.ConfigMapRef == nil {
				continue
			}
			cm := configMaps[ef.ConfigMapRef.Name]
			if cm == nil {
				if ef.ConfigMapRef.Optional == nil || !*ef.ConfigMapRef.Optional {
					c.fail(o, "container %q envFrom: ConfigMap %q is not rendered", ct.Name, ef.ConfigMapRef.Name)
				}
				continue
			}
			for k, v := range cm.Data {
				env[ef.Prefix+k] = v
			}
		}
		for _, e := range ct.Env {
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				ref := e.ValueFrom.ConfigMapKeyRef
				if cm := configMaps[ref.Name]; cm == nil || cm.Data[ref.Key] == "" {
					if ref.Optional == nil || !*ref.Optional {
						c.fail(o, "container %q env %s: ConfigMap key %s/%s is not rendered", ct.Name, e.Name, ref.Name, ref.Key)
					}
				}
			}
			if e.ValueFrom == nil {
				env[e.Name] = e.Value
			}
		}
		// The chart's relay containers are named "relay"; an image of the relay under another
		// container name is still the relay.
		if ct.Name == "relay" || strings.Contains(ct.Image, "genesys-relay") {
			c.checkRelayContainer(o, d, &ct, env)
		}
	}
}

// checkRelayContainer checks a container running the relay binary: a known command, and a
// grace period that outlasts the relay's worst-case stop.
func (c *checker) checkRelayContainer(o object, d *appsv1.Deployment, ct *corev1.Container, env map[string]string) {
	if len(ct.Args) == 0 || !relayCommands[ct.Args[0]] {
		c.fail(o, "container %q args %v: not one of the relay's commands (serve, ingress, worker, listen)", ct.Name, ct.Args)
	}
	drain := 30 // RELAY_SHUTDOWN_TIMEOUT default (src/config.rs)
	if v, ok := env["RELAY_SHUTDOWN_TIMEOUT"]; ok {
		secs, err := durationSeconds(v)
		if err != nil {
			c.fail(o, "container %q RELAY_SHUTDOWN_TIMEOUT %q: %v", ct.Name, v, err)
			return
		}
		drain = secs
	}
	preStop := 0
	if ct.Lifecycle != nil && ct.Lifecycle.PreStop != nil {
		if ex := ct.Lifecycle.PreStop.Exec; ex != nil && len(ex.Command) == 2 && ex.Command[0] == "sleep" {
			n, err := strconv.Atoi(ex.Command[1])
			if err != nil {
				c.fail(o, "container %q preStop sleep %q", ct.Name, ex.Command[1])
			}
			preStop = n
		}
		if s := ct.Lifecycle.PreStop.Sleep; s != nil {
			preStop = int(s.Seconds)
		}
	}
	need := int64(preStop + drain + finalCommitSeconds + producerFlushSeconds)
	grace := int64(30) // the API server's default
	if d.Spec.Template.Spec.TerminationGracePeriodSeconds != nil {
		grace = *d.Spec.Template.Spec.TerminationGracePeriodSeconds
	}
	if grace <= need {
		c.fail(o, "terminationGracePeriodSeconds %d is not above the worst-case stop %d s (preStop %d + RELAY_SHUTDOWN_TIMEOUT %d + final commit %d + producer flush %d)",
			grace, need, preStop, drain, finalCommitSeconds, producerFlushSeconds)
	}
}

var durationPart = regexp.MustCompile(`^([0-9]+)(ms|s|m|h|d)`)

// durationSeconds parses the relay's durations ("30s", "1m30s", "500ms"), rounding up.
func durationSeconds(v string) (int, error) {
	rest := strings.TrimSpace(v)
	if rest == "" {
		return 0, errors.New("empty duration")
	}
	ms := 0
	for rest != "" {
		m := durationPart.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("cannot read %q", rest)
		}
		n, _ := strconv.Atoi(m[1])
		ms += n * map[string]int{"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[m[2]]
		rest = rest[len(m[0]):]
	}
	return (ms + 999) / 1000, nil
}

// writeRules writes the PrometheusRule groups in Prometheus' rule-file format.
func (c *checker) writeRules(path string) {
	var groups []monitoringv1.RuleGroup
	for _, r := range find[monitoringv1.PrometheusRule](c) {
		groups = append(groups, r.v.Spec.Groups...)
	}
	out, err := yaml.Marshal(map[string]any{"groups": groups})
	if err == nil {
		err = os.WriteFile(path, out, 0o644)
	}
	if err != nil {
		c.problems = append(c.problems, fmt.Sprintf("writing %s: %v", path, err))
	}
}
