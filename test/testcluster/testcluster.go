// Package testcluster gives tests a real Kubernetes control plane: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok, built from the Go module proxy by build-binaries.sh
// and started by cluster.sh with kwokctl's binary runtime.
//
// One cluster serves a whole `go test` run. `make test` starts it once and names its kubeconfig in
// IKM_KUBECONFIG; a package run on its own (go test ./plugin/) starts a private cluster on first use
// and stops it when the package's tests end, which is why packages that use Get call Main from
// TestMain.
package testcluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Environment variables read by Get.
const (
	// EnvKubeconfig names the kubeconfig of an already running cluster to share.
	EnvKubeconfig = "IKM_KUBECONFIG"
	// EnvRequire turns "the cluster cannot be built" from a skip into a failure; make test sets it.
	EnvRequire = "IKM_REQUIRE_CLUSTER"
)

// Cluster is a running control plane.
type Cluster struct {
	// Kubeconfig is the path of an admin kubeconfig for the cluster.
	Kubeconfig string
	// Config is the REST configuration built from Kubeconfig.
	Config *rest.Config
	// Client is a typed client for the cluster.
	Client kubernetes.Interface
	// Dynamic is a dynamic client, used for kwok's own resources.
	Dynamic dynamic.Interface
}

var shared struct {
	once    sync.Once
	cluster *Cluster
	err     error
	skip    string
	stop    func()
	// env runs cluster.sh and node.sh against the cluster this process started; nil for a shared one.
	env []string
}

// Get returns the cluster shared by this test binary, starting it on first use. It skips the test
// with the reason when the control plane binaries cannot be built (unless IKM_REQUIRE_CLUSTER is set)
// and fails it when a built cluster does not come up.
func Get(t testing.TB) *Cluster {
	t.Helper()
	shared.once.Do(start)
	if shared.skip != "" {
		if os.Getenv(EnvRequire) != "" {
			t.Fatalf("test cluster required (%s is set) but unavailable: %s", EnvRequire, shared.skip)
		}
		t.Skipf("test cluster unavailable: %s (run `make cluster` to see why)", shared.skip)
	}
	if shared.err != nil {
		t.Fatalf("start test cluster: %v", shared.err)
	}
	return shared.cluster
}

// Main runs the package's tests, then the cleanups (what the tests shared, such as binaries built
// once), and stops the cluster this process started, if any. Call it from TestMain in every
// package that uses Get.
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	if shared.stop != nil {
		shared.stop()
	}
	os.Exit(code)
}

func start() {
	if kc := os.Getenv(EnvKubeconfig); kc != "" {
		shared.cluster, shared.err = connect(kc)
		return
	}
	if _, err := toolDir(); err != nil {
		shared.skip = "build control plane binaries: " + err.Error()
		return
	}
	dir, err := os.MkdirTemp("", "ikm-cluster-")
	if err != nil {
		shared.err = err
		return
	}
	env := append(os.Environ(),
		"IKM_CLUSTER_DIR="+dir,
		"IKM_CLUSTER_NAME=ikm-test-"+strconv.Itoa(os.Getpid()),
	)
	shared.env = env
	cluster := filepath.Join(sourceDir(), "cluster.sh")
	shared.stop = func() {
		cmd := exec.Command("bash", cluster, "down")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "testcluster: stop cluster: %v: %s\n", err, out)
		}
		_ = os.RemoveAll(dir)
	}
	cmd := exec.Command("bash", cluster, "up")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		shared.err = fmt.Errorf("cluster.sh up: %v: %s", err, tail(out, 4000))
		return
	}
	shared.cluster, shared.err = connect(filepath.Join(dir, "kubeconfig"))
}

func connect(kubeconfig string) (*Cluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("build client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("build dynamic client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("cluster at %s does not answer: %w", kubeconfig, err)
	}
	return &Cluster{Kubeconfig: kubeconfig, Config: cfg, Client: client, Dynamic: dyn}, nil
}

// Namespace creates a namespace with a name derived from the test's and deletes it when the test
// ends.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	return c.namespace(t, nil)
}

// PodSecurityRestricted are the labels of a namespace whose pods Pod Security admission holds
// to the "restricted" profile, the apiserver's own admission plugin (on by default).
var PodSecurityRestricted = map[string]string{
	"pod-security.kubernetes.io/enforce":         "restricted",
	"pod-security.kubernetes.io/enforce-version": "latest",
}

// RestrictedNamespace is Namespace labelled PodSecurityRestricted: the apiserver refuses any
// pod there that the "restricted" profile does not admit.
func (c *Cluster) RestrictedNamespace(t testing.TB) string {
	t.Helper()
	return c.namespace(t, PodSecurityRestricted)
}

func (c *Cluster) namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-", Labels: labels}}
	got, err := c.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		err := c.Client.CoreV1().Namespaces().Delete(context.Background(), got.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", got.Name, err)
		}
	})
	c.WaitServiceAccount(t, got.Name)
	return got.Name
}

// WaitServiceAccount waits until the controller-manager has made the default ServiceAccount of a
// new namespace: until then the apiserver refuses pods there.
func (c *Cluster) WaitServiceAccount(t testing.TB, namespace string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("default ServiceAccount of %s never appeared: %v", namespace, err)
	}
}

func sourceDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

var tools struct {
	once sync.Once
	dir  string
	err  error
}

// toolDir runs build-binaries.sh once per test process (at once when the cache holds every
// binary, minutes cold; its progress goes to stderr) and returns the directory of the binaries.
func toolDir() (string, error) {
	tools.once.Do(func() {
		cmd := exec.Command("bash", filepath.Join(sourceDir(), "build-binaries.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = io.MultiWriter(os.Stderr, &stderr)
		out, err := cmd.Output()
		if err != nil {
			tools.err = fmt.Errorf("build-binaries.sh: %w: %s", err, tail(stderr.Bytes(), 2000))
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		tools.dir = lines[len(lines)-1]
	})
	return tools.dir, tools.err
}

// Tool returns the path of a tool build-binaries.sh builds into the cache (helm, kubectl, etcd,
// ...). It fails t when the build fails or the tool is not one of them.
func Tool(t testing.TB, name string) string {
	t.Helper()
	dir, err := toolDir()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("tool %s: %v", name, err)
	}
	return p
}
