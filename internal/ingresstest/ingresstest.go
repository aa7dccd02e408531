// Package ingresstest renders the nginx configuration the tests run as the local site's ingress:
// what an ingress controller (ingress-nginx) generates for the shadow Ingress. WebSocket upgrades
// pass through with hour-long timeouts and no buffering, with the Ingress's proxy-buffer-size and
// proxy-buffers-number; one virtual host per route; any other host gets 404.
package ingresstest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Config is one nginx instance.
type Config struct {
	// Dir is nginx's prefix (-p): its nginx.conf, pid file and temporary paths.
	Dir string
	// Listen is nginx's listen parameter for every server: "80" or "10.244.98.1:80".
	Listen string
	// Routes maps each virtual host to its backend, host:port.
	Routes map[string]string
	// ErrorLog is a file or "stderr".
	ErrorLog string
	// AccessLog is a file; empty logs nothing (the tunnel's path prefix is its secret).
	AccessLog string
	// WorkerConnections bounds nginx's connections (default 64).
	WorkerConnections int
}

// Render returns the nginx.conf.
func (c Config) Render() string {
	var servers strings.Builder
	for _, host := range slices.Sorted(maps.Keys(c.Routes)) {
		fmt.Fprintf(&servers, `	server {
		listen %[1]s;
		server_name %[2]s;
		location / {
			proxy_pass http://%[3]s;
			proxy_http_version 1.1;
			proxy_set_header Upgrade $http_upgrade;
			proxy_set_header Connection $connection_upgrade;
			proxy_set_header Host $host;
			proxy_read_timeout 3600s;
			proxy_send_timeout 3600s;
			proxy_buffering off;
			# The shadow Ingress's proxy-buffer-size and proxy-buffers-number, as ingress-nginx renders them.
			proxy_buffer_size 256k;
			proxy_buffers 4 256k;
		}
	}
`, c.Listen, host, c.Routes[host])
	}
	access := "off"
	if c.AccessLog != "" {
		access = c.AccessLog
	}
	workers := c.WorkerConnections
	if workers <= 0 {
		workers = 64
	}
	return fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[2]s notice;
events { worker_connections %[3]d; }
http {
	access_log %[4]s;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	map $http_upgrade $connection_upgrade { default upgrade; '' close; }
	server {
		listen %[5]s default_server;
		return 404;
	}
%[6]s}
`, c.Dir, c.ErrorLog, workers, access, c.Listen, servers.String())
}

// Write writes the nginx.conf into Dir, for `nginx -c <Dir>/nginx.conf -p <Dir>`.
func (c Config) Write() error {
	return os.WriteFile(filepath.Join(c.Dir, "nginx.conf"), []byte(c.Render()), 0o644)
}
