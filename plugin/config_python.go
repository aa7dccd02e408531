package plugin

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// pythonKubeconfigPath is where the Python plugin looks for the remote cluster's kubeconfig when
// k8s.kubeconfig_path is not set.
const pythonKubeconfigPath = "private/k8s/kubeconfig.yaml"

// pythonOptions are the options of the Python plugin's config.ini that this plugin reads under
// another name (log.level) or does not use. Those without a setter are reported with their Help,
// which names what replaces them, whether they come from the INI file or the environment.
func (c *FileConfig) pythonOptions() []Option {
	unused := func(key string, help string) Option { return Option{Key: key, Help: help} }
	const meta = "not used: the plugin's name, version and API are its own (interlink-k8s-plugin --version; GET /docs)"
	const mesh = "not used: every pod with mesh annotations gets the mesh-agent native sidecar (an init container with restartPolicy Always and a startup probe on its /readyz, Kubernetes 1.29 or later), configured by mesh.agent_image, mesh.agent_startup_timeout and the other mesh.* options"
	const tunnel = "not supported: [tcp_tunnel] was deprecated in the Python plugin; offloaded pods are reached through the mesh (mesh.*), no bastion or gateway is installed"
	return []Option{
		unused("app.name", meta),
		unused("app.description", meta),
		unused("app.version", meta),
		unused("app.api_versions", meta),
		{Key: "log.level", Help: "the Python plugin's name of app.log_level: DEBUG, INFO, WARNING, ERROR or CRITICAL", set: func(v string) error {
			l, err := pythonLogLevel(v)
			c.App.LogLevel = l
			return err
		}},
		unused("log.dir", "not supported: the plugin logs to stderr only; collect it there (kubectl logs, journald, docker logs)"),
		unused("log.rich_enabled", "not used: logs are plain text key=value lines"),
		unused("log.requests_enabled", "not used: every request is logged at debug level (app.log_level debug), failed ones at warn or error"),
		unused("mesh.init_container", mesh),
		unused("mesh.startup_probe", mesh),
		unused("mesh.slurm_setup_script", "not used: the mesh-agent sidecar reads the VK's mesh script and runs no shell script, so no Slurm wrapper is needed; "+mesh[len("not used: "):]),
		unused("tcp_tunnel.enabled", tunnel),
		unused("tcp_tunnel.bastion_namespace", tunnel),
		unused("tcp_tunnel.bastion_chart_path", tunnel),
		unused("tcp_tunnel.gateway_host", tunnel),
		unused("tcp_tunnel.gateway_port", tunnel),
		unused("tcp_tunnel.gateway_ssh_private_key", tunnel),
	}
}

// PythonOptions lists the Python plugin's options that this plugin reads under another name or
// reports as unused, for help text.
func PythonOptions() []Option { var c FileConfig; return c.pythonOptions() }

// notice reports an option without a setter: at info level the Python plugin's metadata, which
// changes nothing, at warn level the rest. Its value is never repeated: it may be a secret
// (tcp_tunnel.gateway_ssh_private_key).
func (c *FileConfig) notice(o Option, _ string) {
	level := slog.LevelWarn
	if strings.HasPrefix(o.Key, "app.") {
		level = slog.LevelInfo
	}
	c.Notices = append(c.Notices, Notice{Option: o.Key, Level: level, Message: o.Help})
}

// pythonLogLevel maps Python's logging level names (and uvicorn's trace) onto app.log_level.
func pythonLogLevel(v string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "trace", "debug", "notset":
		return "debug", nil
	case "info":
		return "info", nil
	case "warning", "warn":
		return "warn", nil
	case "error", "critical", "fatal":
		return "error", nil
	}
	return "", fmt.Errorf("%q is not DEBUG, INFO, WARNING, ERROR or CRITICAL", v)
}

// readINI reads the Python plugin's config.ini: every option of this plugin under its section
// ("[k8s] kubeconfig_path", "[k8s] client_configuration.qps" or the JSON object
// "[k8s] client_configuration"), values as the environment would give them (JSON strings for lists
// and maps), the Python plugin's own options (pythonOptions) and, as there, no namespace prefix
// unless offloading.namespace_prefix is set. Unknown keys are reported, not refused: the Python
// plugin ignored them.
func (c *FileConfig) readINI(b []byte) error {
	f, err := parseINI(b)
	if err != nil {
		return err
	}
	c.Offloading.NamespacePrefix = new("")
	opts := append(c.pythonOptions(), c.options()...)
	known := map[string]bool{}
	for _, o := range opts {
		known[o.Key] = true
		section, key, _ := strings.Cut(o.Key, ".")
		v, ok, err := f.get(section, key)
		switch {
		case !ok:
			continue
		case o.set == nil:
			c.notice(o, "")
			continue
		case err != nil:
			return fmt.Errorf("option %s: %w", o.Key, err)
		}
		if err := o.set(v); err != nil {
			return fmt.Errorf("option %s (line %d): %w", o.Key, f.lookup(section, key).line, err)
		}
	}
	unknown := func(key string, line int) {
		c.Notices = append(c.Notices, Notice{Option: key, Level: slog.LevelWarn,
			Message: fmt.Sprintf("unknown option (line %d), ignored; interlink-k8s-plugin --help lists the options", line)})
	}
	for _, s := range f.sections {
		for _, k := range s.order {
			if !known[s.name+"."+k] {
				unknown(s.name+"."+k, s.keys[k].line)
			}
		}
	}
	for _, k := range f.defaults.order {
		if !knownKey(known, k) {
			unknown(iniDefaultSection+"."+k, f.defaults.keys[k].line)
		}
	}
	return nil
}

// knownKey tells whether a [DEFAULT] key is the key of an option of some section.
func knownKey(known map[string]bool, key string) bool {
	for k := range known {
		if _, rest, _ := strings.Cut(k, "."); rest == key {
			return true
		}
	}
	return false
}

// resolveKubeconfigAsPython picks the remote kubeconfig as the Python plugin did: the file at
// k8s.kubeconfig_path (default private/k8s/kubeconfig.yaml) when it exists, else the inline
// k8s.kubeconfig. With neither, an explicit path that does not exist is refused by Validate, and
// no path at all means the in-cluster configuration (the Python plugin refused to start).
func (c *FileConfig) resolveKubeconfigAsPython() {
	path, explicit := c.K8s.KubeconfigPath, c.K8s.KubeconfigPath != ""
	if !explicit {
		path = pythonKubeconfigPath
	}
	if _, err := os.Stat(path); err == nil {
		if c.K8s.Kubeconfig != "" {
			c.Notices = append(c.Notices, Notice{Option: "k8s.kubeconfig", Level: slog.LevelInfo,
				Message: "not used: the file " + path + " exists and takes precedence, as in the Python plugin"})
		}
		c.K8s.KubeconfigPath, c.K8s.Kubeconfig = path, ""
		return
	}
	if c.K8s.Kubeconfig != "" {
		if explicit {
			c.Notices = append(c.Notices, Notice{Option: "k8s.kubeconfig_path", Level: slog.LevelInfo,
				Message: "the file " + path + " does not exist: the inline k8s.kubeconfig is used (the Python plugin also wrote it to that file; this plugin writes nothing)"})
		}
		c.K8s.KubeconfigPath = ""
	}
}
