// Command coredns is CoreDNS with only the plugins the test clusters' real nodes use (node.sh writes
// their Corefile): cluster names from the apiserver (kubernetes), NXDOMAIN for every other name
// (template), and nothing that forwards: a test cluster never asks the machine's resolver.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
)

func main() {
	// The order in which a query meets the plugins, as in CoreDNS's own plugin.cfg.
	dnsserver.Directives = []string{"bind", "ready", "errors", "log", "cache", "kubernetes", "template"}
	coremain.Run()
}
