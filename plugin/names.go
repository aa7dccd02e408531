package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels and annotations the plugin puts on every remote object. The first two are the seed's, so a
// remote cluster migrated from it keeps working.
const (
	LabelOffloaded  = "interlink.io"                // value "offloading"
	LabelSourceUID  = "interlink.io/source.pod_uid" // the local pod's UID
	ValueOffloaded  = "offloading"
	AnnotSourceUID  = "interlink.io/source.uid"
	AnnotSourceName = "interlink.io/source.name"
	AnnotSourceNS   = "interlink.io/source.namespace"
	AnnotRemotePVC  = "interlink.io/remote-pvc"
	AnnotPVCRetain  = "interlink.io/pvc-retention-policy"
	// GateObjects is the scheduling gate that holds a remote pod until its ConfigMaps and Secrets
	// exist: a create cut short (the plugin killed) never leaves a pod running without them.
	GateObjects      = "interlink.io/objects-ready"
	maxNameLength    = validation.DNS1123LabelMaxLength // 63
	hashSuffixLength = 10
)

// AnnotVKJobID is what InterLink's VK writes on a local pod once the plugin has answered its create:
// the JID of the reply (since interLink 2024-06, b63bbc27). A pod without it was never created.
const AnnotVKJobID = "JobID"

// ScopedName is the remote name of a local object that belongs to one pod: "<name>-<uid>", a valid
// RFC 1123 label of at most 63 characters. The UID part is kept whole so two pods never share a
// name; the name part is cut to fit. A UID that is not itself a clean label is replaced by a hash.
func ScopedName(name, uid string) string {
	suffix := scopeSuffix(uid)
	room := maxNameLength - len(suffix) - 1
	prefix := sanitizeLabel(name)
	if len(prefix) > room {
		prefix = strings.TrimRight(prefix[:room], "-")
	}
	if prefix == "" {
		return suffix
	}
	return prefix + "-" + suffix
}

// scopeSuffix is the part of ScopedName that names the pod: its UID, or a hash of a UID that is not
// a clean label.
func scopeSuffix(uid string) string {
	if suffix := sanitizeLabel(uid); suffix == uid && len(suffix) <= 40 && suffix != "" {
		return suffix
	}
	return shortHash(uid)
}

// isScopedTo reports whether name is a ScopedName of the pod uid.
func isScopedTo(name, uid string) bool {
	suffix := scopeSuffix(uid)
	return name == suffix || strings.HasSuffix(name, "-"+suffix)
}

// RemoteNamespace maps a local namespace to the remote one: "<prefix>-<namespace>", unless the
// prefix is empty or the namespace is excluded from prefixing. Names that would pass 63 characters are cut and end with a
// hash of the full name, so distinct namespaces stay distinct.
func RemoteNamespace(prefix string, exclusions []string, namespace string) string {
	if prefix == "" {
		return namespace
	}
	for _, e := range exclusions {
		if e == namespace {
			return namespace
		}
	}
	full := sanitizeLabel(prefix + "-" + namespace)
	if len(full) <= maxNameLength && full == prefix+"-"+namespace {
		return full
	}
	h := shortHash(prefix + "-" + namespace)
	room := maxNameLength - len(h) - 1
	if len(full) > room {
		full = strings.TrimRight(full[:room], "-")
	}
	return full + "-" + h
}

// sanitizeLabel lowercases s and replaces what RFC 1123 forbids with '-', trimming dashes at the ends.
func sanitizeLabel(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			b = append(b, c)
		default:
			b = append(b, '-')
		}
	}
	return strings.Trim(string(b), "-")
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:hashSuffixLength]
}

// PythonScopedName is the name the Python InterLink Kubernetes plugin gave the remote copy of a
// local object of one pod: "<name>-<uid>" cut to 63 characters (so the UID is cut, not the name),
// lower-cased, every character but a-z, 0-9, '-' and '.' replaced by '-', and what is not
// alphanumeric trimmed at both ends. Pods and objects it offloaded before a switch to this plugin
// carry these names; for names of up to 26 characters without a dot they equal ScopedName's.
func PythonScopedName(name, uid string) string {
	s := name
	if uid != "" {
		s = name + "-" + uid
	}
	if r := []rune(s); len(r) > maxNameLength { // Python cuts characters, not bytes
		s = string(r[:maxNameLength])
	}
	out := make([]byte, 0, len(s))
	for _, c := range strings.ToLower(s) { // one '-' per character, as Python's re.sub
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			out = append(out, byte(c))
		} else {
			out = append(out, '-')
		}
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	i, j := 0, len(out)
	for i < j && !alnum(out[i]) {
		i++
	}
	for j > i && !alnum(out[j-1]) {
		j--
	}
	return string(out[i:j])
}
