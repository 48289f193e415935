package deploy

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// scaledObject mirrors KEDA's keda.sh/v1alpha1 ScaledObject as documented
// (https://keda.sh/docs/latest/reference/scaledobject-spec/). KEDA's own Go package
// (github.com/kedacore/keda/v2/apis/keda/v1alpha1) is not imported: it drags in
// controller-runtime, client-go and KEDA's scalers, far too much to compile for one manifest.
// Strict decoding into this mirror still rejects unknown or misspelt fields.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              scaledObjectSpec `json:"spec"`
}

type scaledObjectSpec struct {
	ScaleTargetRef struct {
		APIVersion             string `json:"apiVersion,omitempty"`
		Kind                   string `json:"kind,omitempty"`
		Name                   string `json:"name"`
		EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
	} `json:"scaleTargetRef"`
	PollingInterval       *int32 `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32 `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32 `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32 `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32 `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32 `json:"maxReplicaCount,omitempty"`
	Advanced              *struct {
		RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
		HorizontalPodAutoscalerConfig *struct {
			Name     string                                         `json:"name,omitempty"`
			Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
		} `json:"horizontalPodAutoscalerConfig,omitempty"`
	} `json:"advanced,omitempty"`
	Fallback *struct {
		FailureThreshold int32  `json:"failureThreshold"`
		Replicas         int32  `json:"replicas"`
		Behavior         string `json:"behavior,omitempty"`
	} `json:"fallback,omitempty"`
	Triggers []struct {
		Type              string            `json:"type"`
		Name              string            `json:"name,omitempty"`
		UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
		MetricType        string            `json:"metricType,omitempty"`
		Metadata          map[string]string `json:"metadata"`
		AuthenticationRef *struct {
			Name string `json:"name"`
			Kind string `json:"kind,omitempty"`
		} `json:"authenticationRef,omitempty"`
	} `json:"triggers"`
}

// kafkaTriggerKeys are the metadata keys KEDA's kafka scaler documents.
var kafkaTriggerKeys = []string{
	"bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv", "topic", "topicFromEnv",
	"lagThreshold", "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers",
	"scaleToZeroOnInvalidOffset", "excludePersistentLag", "limitToPartitionsWithLag",
	"ensureEvenDistributionOfPartitions", "partitionLimitation", "version", "sasl", "tls", "unsafeSsl",
}

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
}

// manifests is every object the kustomization renders, by kind.
type manifests struct {
	namespaces    []corev1.Namespace
	configMaps    map[string]corev1.ConfigMap
	secrets       map[string]corev1.Secret
	services      []corev1.Service
	deployments   map[string]appsv1.Deployment
	pdbs          []policyv1.PodDisruptionBudget
	scaledObjects []scaledObject
}

func strictDecode(t *testing.T, where string, doc []byte, v any) {
	t.Helper()
	require.NoError(t, yaml.UnmarshalStrict(doc, v), "%s: strict decoding", where)
}

// splitDocs splits a multi-document YAML file, dropping documents that hold only comments.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				empty = false
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func decodeObject(t *testing.T, where string, doc []byte, m *manifests) {
	t.Helper()
	var tm metav1.TypeMeta
	require.NoError(t, yaml.Unmarshal(doc, &tm), where)
	where += " " + tm.Kind
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/Namespace":
		var o corev1.Namespace
		strictDecode(t, where, doc, &o)
		m.namespaces = append(m.namespaces, o)
	case "v1/ConfigMap":
		var o corev1.ConfigMap
		strictDecode(t, where, doc, &o)
		require.NotContains(t, m.configMaps, o.Name, "%s: duplicate", where)
		m.configMaps[o.Name] = o
	case "v1/Secret":
		var o corev1.Secret
		strictDecode(t, where, doc, &o)
		m.secrets[o.Name] = o
	case "v1/Service":
		var o corev1.Service
		strictDecode(t, where, doc, &o)
		m.services = append(m.services, o)
	case "apps/v1/Deployment":
		var o appsv1.Deployment
		strictDecode(t, where, doc, &o)
		require.NotContains(t, m.deployments, o.Name, "%s: duplicate", where)
		m.deployments[o.Name] = o
	case "policy/v1/PodDisruptionBudget":
		var o policyv1.PodDisruptionBudget
		strictDecode(t, where, doc, &o)
		m.pdbs = append(m.pdbs, o)
	case "keda.sh/v1alpha1/ScaledObject":
		var o scaledObject
		strictDecode(t, where, doc, &o)
		m.scaledObjects = append(m.scaledObjects, o)
	default:
		t.Fatalf("%s: unexpected object %s %s", where, tm.APIVersion, tm.Kind)
	}
}

// renderK8s reads kustomization.yaml and decodes every resource it lists (plus the example
// Secret, which is applied by hand) strictly into the Kubernetes Go types.
func renderK8s(t *testing.T) (kustomization, manifests) {
	t.Helper()
	var k kustomization
	strictDecode(t, "kustomization.yaml", readFile(t, "k8s", "kustomization.yaml"), &k)
	require.Equal(t, "kustomize.config.k8s.io/v1beta1", k.APIVersion)
	require.Equal(t, "Kustomization", k.Kind)
	m := manifests{configMaps: map[string]corev1.ConfigMap{}, secrets: map[string]corev1.Secret{}, deployments: map[string]appsv1.Deployment{}}
	// Render the directory with kustomize itself, as `kubectl apply -k deploy/k8s` does, and check
	// what it produces (namespace applied, every resource parsed by kustomize first).
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(".", "k8s"))
	require.NoError(t, err, "kustomize build deploy/k8s")
	rendered, err := resMap.AsYaml()
	require.NoError(t, err)
	for i, doc := range splitDocs(rendered) {
		decodeObject(t, "kustomize build#"+strconv.Itoa(i), doc, &m)
	}
	for _, d := range m.deployments {
		require.Equal(t, "surveyhooks", d.Namespace, "kustomize puts %s in the surveyhooks namespace", d.Name)
	}
	for i, doc := range splitDocs(readFile(t, "k8s", "secret.example.yaml")) {
		decodeObject(t, "secret.example.yaml#"+strconv.Itoa(i), doc, &m)
	}
	return k, m
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	k, _ := renderK8s(t)
	files, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	require.NoError(t, err)
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" || base == "secret.example.yaml" {
			continue
		}
		require.Contains(t, k.Resources, base, "kustomization.yaml lists %s", base)
	}
	require.NotContains(t, k.Resources, "secret.example.yaml", "real secrets are created by hand, never applied from the repo")
	require.Equal(t, "surveyhooks", k.Namespace)
}

func TestEveryServiceHasADeploymentWithProbesResourcesAndABudget(t *testing.T) {
	_, m := renderK8s(t)
	for _, name := range serviceNames() {
		d, ok := m.deployments[name]
		require.True(t, ok, "a Deployment for %s", name)
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		require.NoError(t, err)
		require.False(t, sel.Empty(), name)
		require.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "%s: the selector matches the pod template", name)

		pod := d.Spec.Template.Spec
		require.Len(t, pod.Containers, 1, name)
		c := pod.Containers[0]
		require.Equal(t, "surveyhooks/"+name+":dev", c.Image, "%s runs its own image (kustomize images: retags it)", name)
		ports := map[string]int32{}
		for _, p := range c.Ports {
			require.Empty(t, validation.IsValidPortName(p.Name), "%s: port name %q", name, p.Name)
			ports[p.Name] = p.ContainerPort
		}
		require.Contains(t, ports, "ops", name)
		for probe, want := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
			require.NotNil(t, want, "%s: probe %s", name, probe)
			require.NotNil(t, want.HTTPGet, name)
			require.Equal(t, probe, want.HTTPGet.Path, name)
			require.Equal(t, intstr.FromString("ops"), want.HTTPGet.Port, name)
		}
		require.NotNil(t, c.StartupProbe, name)
		require.False(t, c.Resources.Requests.Cpu().IsZero(), "%s requests CPU", name)
		require.False(t, c.Resources.Limits.Memory().IsZero(), "%s has a memory limit", name)

		// The namespace enforces the "restricted" Pod Security Standard.
		require.NotNil(t, pod.SecurityContext.RunAsNonRoot)
		require.True(t, *pod.SecurityContext.RunAsNonRoot, name)
		require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, pod.SecurityContext.SeccompProfile.Type, name)
		require.False(t, *c.SecurityContext.AllowPrivilegeEscalation, name)
		require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem, name)
		require.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop, name)

		var budgets int
		for _, p := range m.pdbs {
			psel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			require.NoError(t, err)
			if psel.Matches(labels.Set(d.Spec.Template.Labels)) {
				budgets++
				require.True(t, p.Spec.MaxUnavailable != nil || p.Spec.MinAvailable != nil, p.Name)
			}
		}
		require.Equal(t, 1, budgets, "%s has exactly one PodDisruptionBudget", name)
	}
	require.Len(t, m.deployments, len(services), "no Deployment for an unknown service")
}

func TestServicesRouteToNamedContainerPorts(t *testing.T) {
	_, m := renderK8s(t)
	require.NotEmpty(t, m.services)
	for _, s := range m.services {
		var matched []string
		for name, d := range m.deployments {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				matched = append(matched, name)
			}
		}
		require.Equal(t, []string{s.Name}, matched, "Service %s selects its own Deployment only", s.Name)
		c := m.deployments[s.Name].Spec.Template.Spec.Containers[0]
		for _, p := range s.Spec.Ports {
			require.True(t, slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.StrVal }),
				"Service %s targets container port %q", s.Name, p.TargetPort.String())
		}
	}
}

// podEnv is what a Deployment's container sees: its ConfigMaps' data, then its env entries
// (secret references resolved to valid test values: the real Secret is not in the repo).
func podEnv(t *testing.T, m manifests, d appsv1.Deployment) map[string]string {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	out := map[string]string{}
	for _, from := range c.EnvFrom {
		require.NotNil(t, from.ConfigMapRef, "%s: envFrom ConfigMaps only", d.Name)
		cm, ok := m.configMaps[from.ConfigMapRef.Name]
		require.True(t, ok, "%s: ConfigMap %s exists", d.Name, from.ConfigMapRef.Name)
		for k, v := range cm.Data {
			out[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, ok := m.secrets[ref.Name]
			require.True(t, ok, "%s: Secret %s is documented in secret.example.yaml", d.Name, ref.Name)
			require.Contains(t, s.StringData, ref.Key, "%s: Secret %s has key %s", d.Name, ref.Name, ref.Key)
			out[e.Name] = testSecret(ref.Key)
		default:
			t.Fatalf("%s: env %s: only values and secretKeyRef are used", d.Name, e.Name)
		}
	}
	return out
}

func testSecret(key string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	if key == "encryption-key" {
		return base64.StdEncoding.EncodeToString(b)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestKubernetesEnvironmentIsWhatEachServiceAccepts(t *testing.T) {
	_, m := renderK8s(t)
	for _, name := range serviceNames() {
		set := podEnv(t, m, m.deployments[name])
		checkEnvAccepted(t, "deploy/k8s", name, set)
		checkEnvValid(t, "deploy/k8s", name, set)
		ops := port(t, set["SURVEYHOOKS_OPS_ADDR"])
		c := m.deployments[name].Spec.Template.Spec.Containers[0]
		for _, p := range c.Ports {
			if p.Name == "ops" {
				require.Equal(t, ops, strconv.Itoa(int(p.ContainerPort)), "%s: the ops port is where the ops server listens", name)
			}
		}
		for _, v := range []string{"INGEST_ADDR", "API_ADDR"} {
			if addr, ok := set[v]; ok {
				require.True(t, slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
					return cp.Name == "http" && strconv.Itoa(int(cp.ContainerPort)) == port(t, addr)
				}), "%s: container port http is %s", name, v)
			}
		}
		for k := range set {
			if strings.Contains(k, "TOKEN") || strings.Contains(k, "KEY") {
				for _, cm := range m.configMaps {
					require.NotContains(t, cm.Data, k, "%s belongs in the Secret, not ConfigMap %s", k, cm.Name)
				}
			}
		}
	}
}

func TestDeliveryScalesOnItsConsumerGroupLag(t *testing.T) {
	_, m := renderK8s(t)
	require.Len(t, m.scaledObjects, 1)
	so := m.scaledObjects[0]
	d := m.deployments["delivery"]
	require.Equal(t, "delivery", so.Spec.ScaleTargetRef.Name)
	require.Equal(t, "Deployment", so.Spec.ScaleTargetRef.Kind)
	require.Nil(t, d.Spec.Replicas, "the autoscaler owns delivery's replica count")

	set := podEnv(t, m, d)
	require.Len(t, so.Spec.Triggers, 1)
	tr := so.Spec.Triggers[0]
	require.Equal(t, "kafka", tr.Type)
	for k := range tr.Metadata {
		require.Contains(t, kafkaTriggerKeys, k, "kafka trigger metadata key %q", k)
	}
	require.Equal(t, effective("delivery", set, "KAFKA_BROKERS"), tr.Metadata["bootstrapServers"])
	require.Equal(t, effective("delivery", set, "DELIVERY_GROUP"), tr.Metadata["consumerGroup"], "the trigger watches the workers' group")
	require.Equal(t, effective("delivery", set, "TOPIC_DELIVERIES"), tr.Metadata["topic"])
	lag, err := strconv.Atoi(tr.Metadata["lagThreshold"])
	require.NoError(t, err)
	require.Positive(t, lag)

	partitions, err := strconv.Atoi(effective("delivery", set, "KAFKA_PARTITIONS"))
	require.NoError(t, err)
	require.NotNil(t, so.Spec.MinReplicaCount)
	require.NotNil(t, so.Spec.MaxReplicaCount)
	require.GreaterOrEqual(t, *so.Spec.MinReplicaCount, int32(1))
	require.LessOrEqual(t, int(*so.Spec.MaxReplicaCount), partitions, "more workers than partitions would idle")
	require.Less(t, *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount)
}

func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	var d appsv1.Deployment
	err := yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n"), &d)
	require.Error(t, err, "a misspelt field must fail")
	var so scaledObject
	err = yaml.UnmarshalStrict([]byte("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nspec:\n  maxReplicas: 2\n"), &so)
	require.Error(t, err)
	require.True(t, bytes.Contains([]byte(err.Error()), []byte("maxReplicas")), err.Error())
}
