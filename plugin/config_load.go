package plugin

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// LoadConfig reads the configuration file at path, applies environment overrides through
// lookupEnv (os.LookupEnv), fills defaults and validates. Errors name the option at fault.
//
// With no path, DefaultConfigPath is read if it exists, else the environment alone configures the
// plugin. A file whose name ends in .ini, or whose first line that is not blank or a comment is a
// "[section]" header, is read in the Python plugin's INI form (readINI); any other file is YAML.
// An environment variable set to the empty string counts as unset, except
// OFFLOADING_NAMESPACE_PREFIX, for which empty means no prefix.
func LoadConfig(path string, lookupEnv func(string) (string, bool)) (FileConfig, error) {
	var c FileConfig
	if path == "" {
		if _, err := os.Stat(DefaultConfigPath); err == nil {
			path = DefaultConfigPath
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		c.Path = path
		if isINI(path, b) {
			c.Format = FormatINI
			err = c.readINI(b)
		} else {
			c.Format = FormatYAML
			err = yaml.UnmarshalStrict(b, &c)
		}
		if err != nil {
			return c, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	if err := c.applyEnv(lookupEnv); err != nil {
		return c, err
	}
	if c.Format == FormatINI {
		c.resolveKubeconfigAsPython()
	}
	c.defaults()
	if strings.HasPrefix(c.App.SocketAddress, "https://") {
		c.Notices = append(c.Notices, Notice{Option: "app.socket_address", Level: slog.LevelWarn,
			Message: "https:// serves plain HTTP, as in the Python plugin; write http://"})
	}
	return c, c.Validate()
}

// isINI tells the INI form from YAML: by the .ini extension, else by a first significant line that
// is a [section] header (a YAML configuration is a mapping, never such a list).
func isINI(path string, b []byte) bool {
	if strings.EqualFold(filepath.Ext(path), ".ini") {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(line, "\ufeff"))
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		_, ok := iniHeader(line)
		return ok && !strings.Contains(line, ",")
	}
	return false
}

// applyEnv sets every option whose environment variable is set, the Python plugin's own first so
// that this plugin's more specific names win.
func (c *FileConfig) applyEnv(lookupEnv func(string) (string, bool)) error {
	for _, o := range append(c.pythonOptions(), c.options()...) {
		v, ok := lookupEnv(o.Env())
		if !ok || (v == "" && o.Key != "offloading.namespace_prefix") {
			continue
		}
		if o.set == nil {
			c.notice(o, v)
			continue
		}
		if err := o.set(v); err != nil {
			return fmt.Errorf("option %s (env %s): %w", o.Key, o.Env(), err)
		}
	}
	if c.Format == "" && c.Offloading.NamespacePrefix == nil {
		c.Notices = append(c.Notices, Notice{Option: "offloading.namespace_prefix", Level: slog.LevelInfo,
			Message: "not set: remote namespaces are offloading-<namespace>; set OFFLOADING_NAMESPACE_PREFIX= (empty) for the local names, the Python plugin's default without a file"})
	}
	return nil
}

func (c *FileConfig) defaults() {
	if c.App.SocketAddress == "" {
		c.App.SocketAddress = DefaultSocket
	}
	if c.App.MaxBodyBytes == 0 {
		c.App.MaxBodyBytes = 16 << 20
	}
	if c.App.LogLevel == "" {
		c.App.LogLevel = "info"
	}
	if c.K8s.ClientConfiguration.QPS == 0 {
		c.K8s.ClientConfiguration.QPS = 1000
	}
	if c.K8s.ClientConfiguration.Burst == 0 {
		c.K8s.ClientConfiguration.Burst = 2000
	}
	if c.K8s.ClientConfiguration.Timeout.Duration == 0 {
		c.K8s.ClientConfiguration.Timeout.Duration = 30 * time.Second
	}
	if c.Offloading.NamespacePrefix == nil {
		c.Offloading.NamespacePrefix = new("offloading")
	}
	if c.Offloading.OrphanSweepInterval.Duration == 0 {
		c.Offloading.OrphanSweepInterval.Duration = 5 * time.Minute
	}
	if c.Mesh.Enabled == nil {
		c.Mesh.Enabled = new(true)
	}
	d := Mesh{}.withDefaults()
	if c.Mesh.AgentImage == "" {
		c.Mesh.AgentImage = d.AgentImage
	}
	if c.Mesh.AgentImagePullPolicy == "" {
		c.Mesh.AgentImagePullPolicy = d.AgentImagePullPolicy
	}
	if c.Mesh.AgentResources == nil {
		c.Mesh.AgentResources = &d.AgentResources
	}
	if c.Mesh.AgentStartupTimeout.Duration == 0 {
		c.Mesh.AgentStartupTimeout.Duration = d.StartupTimeout
	}
	if c.Mesh.DNSMode == "" {
		c.Mesh.DNSMode = string(d.DNSMode)
	}
	if c.Mesh.Mode == "" {
		c.Mesh.Mode = string(d.Mode)
	}
	if c.Mesh.ClusterDomain == "" {
		c.Mesh.ClusterDomain = d.ClusterDomain
	}
	if c.Mesh.TunnelNameservers == "" {
		c.Mesh.TunnelNameservers = TunnelNameserversAuto
	}
	if c.Mesh.TunnelScheme == "" {
		c.Mesh.TunnelScheme = TunnelSchemeAuto
	}
	if c.Mesh.Direction == "" {
		c.Mesh.Direction = DirectionOptOutbound
	}
	if c.Mesh.InboundPort == 0 {
		c.Mesh.InboundPort = DefaultInboundPort
	}
}

// MeshConfig is the mesh part of the configuration, for Offloading.Mesh. It assumes Validate
// passed.
func (c FileConfig) MeshConfig() Mesh {
	m := Mesh{
		Disabled:             c.Mesh.Enabled != nil && !*c.Mesh.Enabled,
		AgentImage:           c.Mesh.AgentImage,
		AgentImagePullPolicy: c.Mesh.AgentImagePullPolicy,
		DNSMode:              DNSMode(c.Mesh.DNSMode),
		Mode:                 meshspec.Mode(c.Mesh.Mode),
		ClusterDomain:        c.Mesh.ClusterDomain,
		StartupTimeout:       c.Mesh.AgentStartupTimeout.Duration,
	}
	if c.Mesh.AgentResources != nil {
		m.AgentResources = *c.Mesh.AgentResources
	}
	m.RemotePodCIDRs, _ = parseCIDRList(c.Mesh.RemotePodCIDR)
	m.RemoteServiceCIDRs, _ = parseCIDRList(c.Mesh.RemoteServiceCIDR)
	if c.Mesh.TunnelAddress != "" {
		m.TunnelAddress, _ = netip.ParseAddrPort(c.Mesh.TunnelAddress)
	}
	m.TunnelNameservers, _ = parseNameservers(c.Mesh.TunnelNameservers)
	m.TunnelTLS = c.Mesh.TunnelScheme == TunnelSchemeWSS
	m.Direction = Direction(c.Mesh.Direction)
	m.InboundPort = c.Mesh.InboundPort
	m.InboundIngressClass = c.Mesh.InboundIngressClass
	m.InboundIngressAnnotations = c.Mesh.InboundIngressAnnotations
	m.InboundTLS = c.Mesh.InboundTLS != nil && *c.Mesh.InboundTLS
	if c.Mesh.TunnelCA != "" {
		m.TunnelCA, _ = readTunnelCA(c.Mesh.TunnelCA)
	}
	return m
}
