package conformance

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The environment test/conformance/run.sh hands the suite.
const (
	envLocal       = "IKM_CONFORMANCE_LOCAL_KUBECONFIG"
	envRemote      = "IKM_CONFORMANCE_REMOTE_KUBECONFIG"
	envOut         = "IKM_CONFORMANCE_OUT"
	envPodCIDR     = "IKM_CONFORMANCE_POD_CIDR"
	envServiceCIDR = "IKM_CONFORMANCE_SERVICE_CIDR"
	envDNSIP       = "IKM_CONFORMANCE_DNS_IP"
	envRealNodes   = "IKM_CONFORMANCE_REAL_NODES"
	envRealPods    = "IKM_CONFORMANCE_REAL_PODS" // 1: the remote cluster has a real node: add RealVariant cases
	envPIDs        = "IKM_CONFORMANCE_PIDS"      // "name=pid ..." of the chain's processes
	envVKNode      = "IKM_CONFORMANCE_VK_NODE"   // the VK the pod cases go through (default vk-node)
)

// caseNamespace is the local namespace of Cases[i]: short, so that the VK's shadow names stay
// within its limits ("<pod>-<ns>-<ns>-wstunnel" ≤ 63 characters).
func caseNamespace(i int) string { return fmt.Sprintf("conf-%02d", i+1) }

// alive watches the chain's processes (children of run.sh: a dead one is a zombie until reaped).
func alive(spec string) func() error {
	type proc struct{ name, pid string }
	var procs []proc
	for _, f := range strings.Fields(spec) {
		name, pid, ok := strings.Cut(f, "=")
		if ok {
			procs = append(procs, proc{name, pid})
		}
	}
	if len(procs) == 0 {
		return nil
	}
	return func() error {
		for _, p := range procs {
			b, err := os.ReadFile("/proc/" + p.pid + "/stat")
			_, rest, _ := strings.Cut(string(b), ") ")
			if err != nil || strings.HasPrefix(rest, "Z") {
				return fmt.Errorf("%s (pid %s) exited: the chain is broken, see its log in bin/conformance/logs", p.name, p.pid)
			}
		}
		return nil
	}
}

var (
	runCases = flag.String("run-cases", "", "regexp selecting the cases to run (default all)")
	parallel = flag.Int("parallel-cases", 8, "cases in flight at once")
)

// TestConformance runs the suite against the chain test/conformance/run.sh started (`make conformance`).
func TestConformance(t *testing.T) {
	if os.Getenv(envLocal) == "" {
		t.Skipf("no chain to test (%s unset): run `make conformance`", envLocal)
	}
	env, out := setup(t)
	sel, err := regexp.Compile(*runCases)
	if err != nil {
		t.Fatalf("-run-cases: %v", err)
	}
	var cases []*Case
	var namespaces []string
	for i := range Cases {
		if sel.MatchString(Cases[i].Name) {
			cases = append(cases, &Cases[i])
			namespaces = append(namespaces, caseNamespace(i))
		}
	}
	if os.Getenv(envRealPods) == "1" && !env.RealNodes {
		img := RealImages{Shell: os.Getenv(envShellImage), Echo: os.Getenv(envEchoImage)}
		if img.Shell == "" || img.Echo == "" {
			t.Fatalf("%s=1 needs %s and %s (the images the remote node imported)", envRealPods, envShellImage, envEchoImage)
		}
		for i := range Cases {
			if v, ok := RealVariant(&Cases[i], img, env.VKNode); ok && sel.MatchString(v.Name) {
				cases = append(cases, v)
				namespaces = append(namespaces, fmt.Sprintf("conf-r%02d", i+1))
			}
		}
	}
	start := time.Now()
	runs := make([]*Run, len(cases))
	durations := make(map[string]time.Duration)
	var mu sync.Mutex
	done := 0
	progress(t.Context(), start, runs, &mu, &done)

	sem := make(chan struct{}, max(1, *parallel))
	var wg sync.WaitGroup
	for i, c := range cases {
		r := &Run{Env: env, Case: c, NS: namespaces[i]}
		mu.Lock()
		runs[i] = r
		mu.Unlock()
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r.mu.Lock()
			r.step = "starting"
			r.mu.Unlock()
			fmt.Fprintf(os.Stderr, "[conformance +%s] start %s (namespace %s): %s\n", since(start), c.Name, r.NS, c.Doc)
			cs := time.Now()
			r.Execute(t.Context())
			mu.Lock()
			durations[c.Name] = time.Since(cs)
			done++
			mu.Unlock()
			var f int
			for _, res := range r.Results() {
				if res.Status == Fail {
					f++
				}
			}
			fmt.Fprintf(os.Stderr, "[conformance +%s] done  %s in %s (%d failed)\n", since(start), c.Name, since(cs), f)
		})
	}
	wg.Wait()

	var all []Result
	for _, r := range runs {
		all = append(all, r.Results()...)
	}
	summary := Summarize(all, durations)
	var table bytes.Buffer
	WriteTable(&table, summary)
	fmt.Print("\n" + table.String())
	if err := os.WriteFile(filepath.Join(out, "table.txt"), table.Bytes(), 0o644); err != nil {
		t.Error(err)
	}
	var junit bytes.Buffer
	if err := WriteJUnit(&junit, summary, time.Since(start)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(out, "junit.xml")
	if err := os.WriteFile(path, junit.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("\nJUnit report: %s (%s)\n", path, since(start))
	for _, c := range summary {
		if c.Status == Fail {
			t.Errorf("case %s failed %d of %d expectations", c.Case, c.Fail, len(c.Results))
		}
	}
}

func since(t time.Time) string { return time.Since(t).Round(time.Second).String() }

// progress prints, every 10 s, what is running and an estimate of what is left.
func progress(ctx context.Context, start time.Time, runs []*Run, mu *sync.Mutex, done *int) {
	const perCase = 45 * time.Second // a case's usual length on kwok, before one has finished
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			mu.Lock()
			n, d := len(runs), *done
			var active []string
			for _, r := range runs {
				if r == nil {
					continue
				}
				if s := r.Step(); s != "" && s != "done" {
					active = append(active, r.Case.Name+": "+s)
				}
			}
			mu.Unlock()
			if d == n {
				return
			}
			elapsed := time.Since(start)
			per := perCase
			if d > 0 {
				per = elapsed * time.Duration(*parallel) / time.Duration(d)
			}
			left := per * time.Duration(n-d) / time.Duration(max(1, *parallel))
			fmt.Fprintf(os.Stderr, "[conformance +%s] %d/%d cases done, about %s left; running: %s\n",
				elapsed.Round(time.Second), d, n, left.Round(time.Second), strings.Join(active, "; "))
		}
	}()
}

func setup(t *testing.T) (*Env, string) {
	t.Helper()
	client := func(kc string) (kubernetes.Interface, dynamic.Interface) {
		cfg, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			t.Fatalf("kubeconfig %s: %v", kc, err)
		}
		cfg.QPS, cfg.Burst = 100, 200
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		d, err := dynamic.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c, d
	}
	local, _ := client(os.Getenv(envLocal))
	remote, remoteDyn := client(os.Getenv(envRemote))
	out := os.Getenv(envOut)
	if out == "" {
		out = t.TempDir()
	}
	logDir := filepath.Join(out, "remote-logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	vk := os.Getenv(envVKNode)
	if vk == "" {
		vk = "vk-node"
	}
	env := &Env{Local: local, Remote: remote, RemoteDynamic: remoteDyn, VKNode: vk, LogDir: logDir,
		RealNodes: os.Getenv(envRealNodes) == "1", Alive: alive(os.Getenv(envPIDs))}
	var err error
	if env.PodCIDR, err = netip.ParsePrefix(os.Getenv(envPodCIDR)); err != nil {
		t.Fatalf("%s: %v", envPodCIDR, err)
	}
	if env.ServiceCIDR, err = netip.ParsePrefix(os.Getenv(envServiceCIDR)); err != nil {
		t.Fatalf("%s: %v", envServiceCIDR, err)
	}
	if env.DNSIP, err = netip.ParseAddr(os.Getenv(envDNSIP)); err != nil {
		t.Fatalf("%s: %v", envDNSIP, err)
	}
	return env, out
}
