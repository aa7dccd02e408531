package conformance

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Case is one pod offloaded through the whole chain and what must hold for it. The harness puts
// the pod in a namespace of its own, pins it to the VK's node (selector and toleration) and
// creates Objects first.
type Case struct {
	// Name is the case's name, also the local namespace's suffix.
	Name string
	// Doc says what the case proves.
	Doc string
	// Objects are created in the case's namespace before the pod: ConfigMaps, Secrets, Services.
	Objects []any
	// Pod is the pod offloaded through the VK.
	Pod *corev1.Pod
	// Clients are local pods on the local cluster's own nodes, created once the offloaded pod is
	// Running (the mesh cases' traffic); their Want is always a real-node outcome.
	Clients []*corev1.Pod
	// NoMesh says the pod opts out of the mesh (interlink.eu/mesh-network: disabled).
	NoMesh bool
	// Env is what each container's environment must hold remotely (container → name → value),
	// beyond the literal values of the spec, which are always checked (valueFrom resolved by the VK).
	Env map[string]map[string]string
	// Want is what real containers produce: phase, log lines, exit codes.
	Want Want
	// ClientWant is Want for each of Clients, by pod name.
	ClientWant map[string]Want
	// Checks are case-specific checks the chain proves on any node.
	Checks []Check
	// Known maps a check's name to the defect outside this project that makes it fail (XFAIL).
	Known map[string]string
	// OnRealNode adapts RealVariant's case (its pod, Want, Known) beyond the images it swaps.
	OnRealNode func(v *Case, img RealImages)
	// Real marks a RealVariant: its remote pod runs on the remote cluster's real node, so its Want is
	// checked rather than skipped.
	Real bool
}

// Want is the outcome of running a pod's containers for real.
type Want struct {
	// Phase is the pod's final (or steady) phase.
	Phase corev1.PodPhase
	// Logs are regular expressions each container's log must match, by container.
	Logs map[string][]string
	// ExitCodes are the containers' exit codes, by container (init containers included).
	ExitCodes map[string]int32
	// Reasons are the containers' terminated reasons (e.g. OOMKilled), by container.
	Reasons map[string]string
}

const (
	meshOptOut = "interlink.eu/mesh-network"
	busybox    = "busybox:1.36"
	helloWorld = "hello-world:latest"

	projectedSecretsLost = "InterLink's VK (f6321757) leaves the Secret sources of a projected volume out of projectedvolumemaps " +
		"(the create request holds only the ConfigMap and downward-API files), so no plugin can copy them"
)

func sh(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: busybox, Command: []string{"/bin/sh", "-c"}, Args: []string{script}}
}

func pod(name string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: containers},
	}
}

func withInit(p *corev1.Pod, inits ...corev1.Container) *corev1.Pod {
	p.Spec.InitContainers = inits
	return p
}

func withVolumes(p *corev1.Pod, vs ...corev1.Volume) *corev1.Pod {
	p.Spec.Volumes = vs
	return p
}

func mount(c corev1.Container, name, path string) corev1.Container {
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: path})
	return c
}

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
}

func secret(name string, data map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data, Type: corev1.SecretTypeOpaque}
}

func service(name string, selector map[string]string, port int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{
			Name: "http", Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP,
		}}},
	}
}

// quoting are environment values that break naive shell or YAML quoting on their way to the
// remote container (vk-test-set 105-env-quotes).
var quoting = []corev1.EnvVar{
	{Name: "SINGLE_QUOTES", Value: "It's a beautiful day"},
	{Name: "DOUBLE_QUOTES", Value: `He said "hello world"`},
	{Name: "JSON_STRING", Value: `{"name": "test", "value": "123"}`},
	{Name: "SHELL_COMMAND", Value: `echo 'Hello' && echo "World"`},
	{Name: "ESCAPED", Value: `This is a \"quoted\" word`},
	{Name: "EMPTY_STRING", Value: ""},
	{Name: "SPACES_ONLY", Value: "   "},
	{Name: "BACKTICKS_DOLLARS", Value: "Run `command` with $HOME and $(id)"},
	{Name: "NEWLINES", Value: "Line 1\nLine 2 with 'quotes'\nLine 3"},
	{Name: "DASHES", Value: "---\nnot: a document"},
}

// Cases is the suite, in the order it is reported.
var Cases = []Case{
	{
		Name: "hello-world",
		Doc:  "one container prints a line and exits 0",
		Pod:  pod("hello", sh("hello", `echo "Hello from InterLink"`)),
		Want: Want{Phase: corev1.PodSucceeded, Logs: map[string][]string{"hello": {`(?m)^Hello from InterLink$`}}, ExitCodes: map[string]int32{"hello": 0}},
	},
	{
		Name: "env-quoting",
		Doc:  "literal, ConfigMap- and Secret-sourced environment values reach the container byte for byte",
		Objects: []any{
			configMap("env-cm", map[string]string{"color": "blue 'sky'"}),
			secret("env-secret", map[string]string{"token": `s3cr3t "value"`}),
		},
		Pod: func() *corev1.Pod {
			c := sh("env", `env | sort; test "$SINGLE_QUOTES" = "It's a beautiful day" && echo ENV_OK`)
			c.Env = append(append(c.Env, quoting...),
				corev1.EnvVar{Name: "FROM_CM", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "env-cm"}, Key: "color"}}},
				corev1.EnvVar{Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "env-secret"}, Key: "token"}}},
			)
			return pod("env", c)
		}(),
		Env:  map[string]map[string]string{"env": {"FROM_CM": "blue 'sky'", "FROM_SECRET": `s3cr3t "value"`}},
		Want: Want{Phase: corev1.PodSucceeded, Logs: map[string][]string{"env": {`(?m)^ENV_OK$`, `(?m)^JSON_STRING=\{"name": "test", "value": "123"\}$`}}},
	},
	{
		Name: "shared-emptydir",
		Doc:  "an init container writes into an emptyDir the app container reads",
		Pod: withVolumes(withInit(
			pod("emptydir", mount(sh("reader", `cat /shared/msg`), "shared", "/shared")),
			mount(sh("writer", `echo "written by init" > /shared/msg`), "shared", "/shared"),
		), corev1.Volume{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}),
		Want: Want{Phase: corev1.PodSucceeded, Logs: map[string][]string{"reader": {`written by init`}}},
	},
	{
		Name: "configmap-secret-volumes",
		Doc:  "ConfigMap and Secret volumes are copied remotely with their data",
		Objects: []any{
			configMap("app-config", map[string]string{"app.properties": "mode=conformance\n", "motd": "hello"}),
			secret("app-secret", map[string]string{"password": "p@ss 'word'"}),
		},
		Pod: withVolumes(
			pod("volumes", mount(mount(sh("cat", `cat /cfg/app.properties /sec/password`), "cfg", "/cfg"), "sec", "/sec")),
			corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}},
			corev1.Volume{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "app-secret"}}},
		),
		Want: Want{Phase: corev1.PodSucceeded, Logs: map[string][]string{"cat": {`mode=conformance`, `p@ss 'word'`}}},
	},
	{
		Name: "memory-limit-exceeded",
		Doc:  "a container allocating past its memory limit is OOM-killed and the pod fails",
		Pod: func() *corev1.Pod {
			c := sh("hog", `echo allocating; head -c 200m /dev/zero | tail`)
			c.Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")},
			}
			return pod("oom", c)
		}(),
		Want: Want{Phase: corev1.PodFailed, Reasons: map[string]string{"hog": "OOMKilled"}, ExitCodes: map[string]int32{"hog": 137}},
		OnRealNode: func(v *Case, _ RealImages) {
			v.Known = map[string]string{"oom: hog terminated OOMKilled": "InterLink's VK (f6321757) replaces a terminated container's reason " +
				`with "Error: <exit code>" ("Completed" for 0): the plugin reports OOMKilled, as the InterLink API's log of the status answer shows`}
		},
	},
	{
		Name: "init-container",
		Doc:  "one init container runs to completion before the app container",
		Pod: withInit(pod("init-one", sh("app", `echo app-started`)),
			sh("init", `echo init-done`)),
		Want: Want{Phase: corev1.PodSucceeded, Logs: map[string][]string{"init": {`init-done`}, "app": {`app-started`}}, ExitCodes: map[string]int32{"init": 0, "app": 0}},
	},
	{
		Name: "multi-init-containers",
		Doc:  "three init containers run in order; the local pod reports exactly its own",
		Pod: withInit(pod("init-many", sh("app", `echo app-started`)),
			sh("init-1", `echo first`), sh("init-2", `echo second`), sh("init-3", `echo third`)),
		Want: Want{Phase: corev1.PodSucceeded, Logs: map[string][]string{"init-1": {`first`}, "init-2": {`second`}, "init-3": {`third`}}},
	},
	{
		Name: "probes",
		Doc:  "startup, readiness and liveness probes survive the translation and pass",
		Pod: func() *corev1.Pod {
			c := sh("probed", `touch /tmp/ready; echo probed-up; sleep 3600`)
			exec := corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/ready"}}}
			c.StartupProbe = &corev1.Probe{ProbeHandler: exec, PeriodSeconds: 1, FailureThreshold: 30}
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: exec, PeriodSeconds: 2}
			c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, PeriodSeconds: 5}
			return pod("probes", c)
		}(),
		Want: Want{Phase: corev1.PodRunning, Logs: map[string][]string{"probed": {`probed-up`}}},
	},
	{
		Name: "default-entrypoint",
		Doc:  "a container without command or args runs its image's entrypoint",
		Pod: func() *corev1.Pod {
			p := pod("entrypoint", corev1.Container{Name: "hello", Image: helloWorld})
			return p
		}(),
		Want: Want{Phase: corev1.PodSucceeded, Logs: map[string][]string{"hello": {`Hello from Docker!`}}},
		// No hello-world image without a registry: the project's echo-server, whose entrypoint serves
		// and says so, stands for it.
		OnRealNode: func(v *Case, img RealImages) {
			v.Pod.Spec.Containers[0].Image = img.Echo
			v.Want = Want{Phase: corev1.PodRunning, Logs: map[string][]string{"hello": {`serving on`}}}
		},
	},
	{
		Name: "failing-container",
		Doc:  "a container exiting 3 fails the pod and its last words stay readable",
		Pod:  pod("failing", sh("fail", `echo "about to fail" >&2; exit 3`)),
		Want: Want{Phase: corev1.PodFailed, Logs: map[string][]string{"fail": {`about to fail`}}, ExitCodes: map[string]int32{"fail": 3}},
	},
	{
		Name: "lifecycle-hooks",
		Doc:  "postStart and preStop hooks survive the translation and run",
		Pod: func() *corev1.Pod {
			c := sh("hooked", `sleep 2; cat /tmp/poststart; sleep 3600`)
			c.Lifecycle = &corev1.Lifecycle{
				PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "echo POSTSTART_RAN > /tmp/poststart"}}},
				PreStop:   &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "echo PRESTOP_RAN"}}},
			}
			return pod("hooks", c)
		}(),
		Want: Want{Phase: corev1.PodRunning, Logs: map[string][]string{"hooked": {`POSTSTART_RAN`}}},
	},
	{
		Name: "projected-volumes",
		Doc:  "a projected volume (ConfigMap, Secret, downward API, service-account token) arrives whole",
		Objects: []any{
			configMap("proj-cm", map[string]string{"greeting": "hi"}),
			secret("proj-secret", map[string]string{"key": "value"}),
		},
		Pod: func() *corev1.Pod {
			p := pod("projected", mount(sh("reader", `ls /projected; cat /projected/greeting /projected/key /projected/podname`), "all-in-one", "/projected"))
			p.Spec.Volumes = []corev1.Volume{{Name: "all-in-one", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "proj-cm"}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "proj-secret"}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "podname", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
			}}}}}
			return p
		}(),
		Want:  Want{Phase: corev1.PodSucceeded, Logs: map[string][]string{"reader": {`(?m)^hi`, `value`, `projected`}}},
		Known: map[string]string{checkVolumes: projectedSecretsLost},
		// Run for real, the missing Secret file fails the reader ("can't open '/projected/key'").
		OnRealNode: func(v *Case, _ RealImages) {
			v.Known[`projected: phase Succeeded`] = projectedSecretsLost
			v.Known[`projected: log of reader matches "value"`] = projectedSecretsLost
		},
	},
	{
		Name: "mesh-service-in",
		Doc:  "a local client pod reaches the offloaded pod through a ClusterIP Service (shadow pod IP → mesh)",
		Objects: []any{
			service("web", map[string]string{"app": "web"}, 8080),
		},
		Pod: func() *corev1.Pod {
			c := sh("http-server", `echo MESH_SERVER_STARTING; while true; do printf 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nPONG\n' | nc -l -p 8080 -w 1; done`)
			c.Ports = []corev1.ContainerPort{{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
			return pod("web", c)
		}(),
		Clients: []*corev1.Pod{pod("web-client", sh("http-client",
			`for i in $(seq 30); do nc -w 2 web 8080 </dev/null | grep -q PONG && { echo MESH_CLIENT_SUCCESS; exit 0; }; sleep 2; done; exit 1`))},
		Want:       Want{Phase: corev1.PodRunning, Logs: map[string][]string{"http-server": {`MESH_SERVER_STARTING`}}},
		ClientWant: map[string]Want{"web-client": {Phase: corev1.PodSucceeded, Logs: map[string][]string{"http-client": {`MESH_CLIENT_SUCCESS`}}}},
		Checks:     []Check{serviceEndpointIsShadow("web")},
	},
	{
		Name: "mesh-service-out",
		Doc:  "the offloaded pod reaches a local Service by name (mesh routes and DNS)",
		Objects: []any{
			service("echo", map[string]string{"app": "echo-backend"}, 8080),
		},
		Pod: pod("caller", sh("caller",
			`for i in $(seq 30); do nc -w 2 echo 8080 </dev/null | grep -q PONG && { echo MESH_OUT_SUCCESS; exit 0; }; sleep 2; done; exit 1`)),
		Clients: []*corev1.Pod{func() *corev1.Pod {
			p := pod("echo-backend", sh("echo", `while true; do printf 'PONG\n' | nc -l -p 8080 -w 1; done`))
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
			return p
		}()},
		Want:       Want{Phase: corev1.PodSucceeded, Logs: map[string][]string{"caller": {`MESH_OUT_SUCCESS`}}},
		ClientWant: map[string]Want{"echo-backend": {Phase: corev1.PodRunning}},
		Checks:     []Check{meshReachesLocalServices},
	},
	{
		Name: "mesh-opt-out",
		Doc:  "interlink.eu/mesh-network: disabled runs the pod without sidecar, mesh Secret or shadow pod",
		Pod: func() *corev1.Pod {
			p := pod("no-mesh", sh("plain", `echo no mesh here`))
			p.Annotations = map[string]string{meshOptOut: "disabled"}
			return p
		}(),
		NoMesh: true,
		Want:   Want{Phase: corev1.PodSucceeded, Logs: map[string][]string{"plain": {`no mesh here`}}},
	},
}
