// Package netnstest gives kernel-touching tests throwaway network namespaces, so that they
// never change the host's interfaces, addresses, routes, sysctls or firewall.
//
// New creates a namespace named Prefix plus a random suffix, with lo up, and deletes it when
// the test ends; Veth links two of them. Code runs inside a namespace in two ways: Exec runs a
// command there (ip netns exec), Do and Go run a Go function on an OS thread locked into it.
// Sockets keep the namespace they were created in, so a listener or connection opened inside
// Do can be used from any goroutine afterwards. Everything skips unless the test runs as root.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Prefix starts the name of every namespace New creates: `ip netns list | grep ikmnf-` after
// a test run must print nothing.
const Prefix = "ikmnf-"

// NS is one network namespace owned by a test.
type NS struct {
	// Name is the namespace's name under /run/netns, as ip netns knows it.
	Name string

	t testing.TB
	h nsHandle
}

// Require skips t unless the process is root and every tool is found on PATH or in
// /usr/sbin or /sbin.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run go test as root)")
	}
	for _, tool := range tools {
		if _, err := LookPath(tool); err != nil {
			t.Skipf("skipping: needs %s: %v", tool, err)
		}
	}
}

// LookPath finds a tool on PATH, then in /usr/sbin and /sbin, which a non-login root PATH
// may lack.
func LookPath(tool string) (string, error) {
	p, err := exec.LookPath(tool)
	if err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p, serr := exec.LookPath(dir + "/" + tool); serr == nil {
			return p, nil
		}
	}
	return "", err
}

func randomName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return Prefix + hex.EncodeToString(b)
}

// run runs a command in the test's namespace, here the caller's, and returns its combined output.
func run(args ...string) (string, error) {
	path, err := LookPath(args[0])
	if err != nil {
		return "", fmt.Errorf("run %s: %w", args[0], err)
	}
	out, err := exec.Command(path, args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("run %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Exec runs a command inside the namespace (ip netns exec) and returns its combined output;
// the error quotes the command and its output. The command is looked up like LookPath.
func (n *NS) Exec(args ...string) (string, error) {
	if len(args) == 0 {
		return "", fmt.Errorf("exec in %s: no command", n.Name)
	}
	path, err := LookPath(args[0])
	if err != nil {
		return "", fmt.Errorf("exec in %s: %w", n.Name, err)
	}
	return run(append([]string{"ip", "netns", "exec", n.Name, path}, args[1:]...)...)
}

// MustExec is Exec that fails the test on error. Call it from the test goroutine only.
func (n *NS) MustExec(args ...string) string {
	n.t.Helper()
	out, err := n.Exec(args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// Veth links two namespaces with a veth pair, aName in a and bName in b, both up. The pair
// dies with its namespaces. Call it from the test goroutine only.
func Veth(a *NS, aName string, b *NS, bName string) {
	a.t.Helper()
	if _, err := run("ip", "-n", a.Name, "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.Name); err != nil {
		a.t.Fatal(err)
	}
	a.MustExec("ip", "link", "set", aName, "up")
	b.MustExec("ip", "link", "set", bName, "up")
}
