package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
)

// The JSON shapes InterLink exchanges with a plugin. Field names are the wire names; they are
// InterLink's, inconsistent casing included.

// RetrievedPodData is the body of POST /create: one pod with the data its volumes need.
type RetrievedPodData struct {
	Pod corev1.Pod `json:"pod"`
	// Containers holds one entry per init container, then one per container.
	Containers []RetrievedContainer `json:"container"`
	// JobConfig and JobScript serve batch plugins; this plugin accepts and ignores them.
	JobConfig json.RawMessage `json:"jobConfig,omitempty"`
	JobScript string          `json:"jobScript,omitempty"`
}

// RetrievedContainer is the volume data InterLink gathered for one container. The same ConfigMap or
// Secret can appear in several entries.
type RetrievedContainer struct {
	Name       string             `json:"name"`
	ConfigMaps []corev1.ConfigMap `json:"configMaps"`
	// ProjectedVolumeMaps are named after the pod's projected volumes and hold their files
	// (service-account token, ca.crt, downward-API files).
	ProjectedVolumeMaps []corev1.ConfigMap `json:"projectedvolumemaps"`
	Secrets             []corev1.Secret    `json:"secrets"`
	EmptyDirs           []string           `json:"emptyDirs"`
	// PersistentVolumeClaims are the claims the container mounts, a field of InterLink's plugin
	// SDK (InterLink's own VK does not send it today); those named in interlink.io/remote-pvc are
	// created remotely when missing.
	PersistentVolumeClaims []corev1.PersistentVolumeClaim `json:"persistentVolumeClaims,omitempty"`
}

// CreateResponse is the reply to POST /create. PodJID is the remote pod's UID; the VK stores it.
type CreateResponse struct {
	PodUID string `json:"PodUID"`
	PodJID string `json:"PodJID"`
}

// PodStatus is one element of the reply to /status.
type PodStatus struct {
	Name           string                   `json:"name"`
	UID            string                   `json:"UID"`
	Namespace      string                   `json:"namespace"`
	JID            string                   `json:"JID"`
	Containers     []corev1.ContainerStatus `json:"containers"`
	InitContainers []corev1.ContainerStatus `json:"initContainers"`
}

// LogRequest is the body of /getLogs (InterLink's LogStruct).
type LogRequest struct {
	Namespace     string     `json:"Namespace"`
	PodUID        string     `json:"PodUID"`
	PodName       string     `json:"PodName"`
	ContainerName string     `json:"ContainerName"`
	Opts          LogOptions `json:"Opts"`
}

// LogOptions mirror kubectl logs' options (InterLink's ContainerLogOpts). Zero means unset.
type LogOptions struct {
	Tail         int       `json:"Tail"`
	LimitBytes   int       `json:"Bytes"`
	Timestamps   bool      `json:"Timestamps"`
	Follow       bool      `json:"Follow"`
	Previous     bool      `json:"Previous"`
	SinceSeconds int       `json:"SinceSeconds"`
	SinceTime    time.Time `json:"SinceTime"`
}

// PingResponse answers the VK's ping (GET /status with []): the capacity this plugin can offer and
// the taints the virtual node should carry.
type PingResponse struct {
	Status    string     `json:"status,omitempty"`
	Resources *Resources `json:"resources,omitempty"`
	Taints    []Taint    `json:"taints,omitempty"`
}

// Resources is the capacity reported to the virtual node, as Kubernetes quantity strings.
type Resources struct {
	CPU          string        `json:"cpu,omitempty"`
	Memory       string        `json:"memory,omitempty"`
	Pods         string        `json:"pods,omitempty"`
	Accelerators []Accelerator `json:"accelerators,omitempty"`
}

// Accelerator is an extended resource such as nvidia.com/gpu.
type Accelerator struct {
	ResourceType string `json:"resourceType"`
	Available    string `json:"available"`
}

// Taint is a taint for the virtual node.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// ErrorResponse is the JSON body of every error reply.
type ErrorResponse struct {
	Error string `json:"error"`
	// Field names the offending request field for validation errors.
	Field string `json:"field,omitempty"`
}

// decodeError is a request body that is not the JSON the route expects.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return "malformed request body: " + e.err.Error() }

func (e *decodeError) Unwrap() error { return e.err }

// decodeJSON reads the whole body as exactly one JSON value into v. Bodies that are not UTF-8,
// hold anything but white space after the value, or are the JSON null are refused (400); a value
// of the wrong type is refused with the field named (422). Unknown fields are ignored: InterLink
// and Kubernetes add fields in new releases, and an older plugin must keep serving a newer VK.
func decodeJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var merr *http.MaxBytesError
		if errors.As(err, &merr) {
			return err
		}
		return &decodeError{fmt.Errorf("read body: %w", err)}
	}
	return decodeBody(b, v)
}

func decodeBody(b []byte, v any) error {
	if !utf8.Valid(b) {
		return &decodeError{errors.New("the body is not valid UTF-8")}
	}
	if t := bytes.TrimSpace(b); len(t) == 0 || string(t) == "null" {
		return &decodeError{errors.New("the body is empty or null; it must be one JSON value")}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return jsonErr(err, "")
	}
	if rest := bytes.TrimSpace(b[dec.InputOffset():]); len(rest) > 0 {
		return &decodeError{fmt.Errorf("%d bytes after the JSON value; the body must hold exactly one", len(rest))}
	}
	return nil
}

// jsonErr turns a decoding error into the plugin's: a value of the wrong type names its field
// (after prefix) and is a ValidationError (422), anything else a decodeError (400).
func jsonErr(err error, prefix string) error {
	var terr *json.UnmarshalTypeError
	if errors.As(err, &terr) {
		field := terr.Field
		if field == "" && prefix == "" {
			field = "(body)"
		}
		return &ValidationError{Field: prefix + field, Reason: fmt.Sprintf("must be a JSON %s, not %s", jsonKind(terr.Type), terr.Value)}
	}
	return &decodeError{err}
}

// decodeEach reads a body that is one JSON array, decoding its elements one at a time into a
// fresh T each and handing them to each: memory holds one element, not the whole array (the VK's
// /status carries every pod it holds: 10,000 pods are tens of MB of JSON, several times that
// decoded at once). The refusals are decodeJSON's: not UTF-8, empty, null or not an array, or
// anything after it (400); an element of the wrong shape names its field after "[]." (422).
func decodeEach[T any](r io.Reader, each func(*T) error) error {
	dec := json.NewDecoder(&utf8Reader{r: r})
	tok, err := dec.Token()
	switch {
	case errors.Is(err, io.EOF):
		return &decodeError{errors.New("the body is empty or null; it must be one JSON value")}
	case err != nil:
		return wrapRead(err)
	case tok == nil:
		return &decodeError{errors.New("the body is empty or null; it must be one JSON value")}
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return &ValidationError{Field: "(body)", Reason: fmt.Sprintf("must be a JSON array, not %v", tok)}
	}
	for dec.More() {
		v := new(T)
		if err := dec.Decode(v); err != nil {
			if readFailed(err) {
				return err
			}
			return jsonErr(err, "[].")
		}
		if err := each(v); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing ]
		return wrapRead(err)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil && readFailed(err) {
			return err
		}
		return &decodeError{errors.New("more after the JSON array; the body must hold exactly one value")}
	}
	return nil
}

// readFailed tells whether err is the body's own: over its limit (413) or not UTF-8 (400).
func readFailed(err error) bool {
	var merr *http.MaxBytesError
	var derr *decodeError
	return errors.As(err, &merr) || errors.As(err, &derr)
}

// wrapRead keeps the body's own errors (readFailed) and makes any other a decodeError.
func wrapRead(err error) error {
	if readFailed(err) {
		return err
	}
	return &decodeError{err}
}

// utf8Reader passes r through, failing with a decodeError at the first byte that is not UTF-8. It
// checks each read where it lies (no copy: /status bodies are tens of MB), keeping back only the
// start of a rune cut by the read's end.
type utf8Reader struct {
	r    io.Reader
	tail []byte // the start of a rune cut by the last read, at most 3 bytes
}

func (u *utf8Reader) Read(b []byte) (int, error) {
	n, err := u.r.Read(b)
	eof := errors.Is(err, io.EOF)
	p := b[:n]
	if len(u.tail) > 0 && (n > 0 || eof) {
		// The cut rune ends in this read: check it whole, in a small buffer, and p after it.
		var buf [utf8.UTFMax]byte
		k := copy(buf[:], u.tail)
		k += copy(buf[k:], p)
		if !utf8.FullRune(buf[:k]) && !eof {
			u.tail = append(u.tail[:0], buf[:k]...) // still cut (a read of a byte or two)
			return n, err
		}
		if r, size := utf8.DecodeRune(buf[:k]); r == utf8.RuneError && size <= 1 {
			return 0, &decodeError{errors.New("the body is not valid UTF-8")}
		} else {
			p = p[size-len(u.tail):]
		}
		u.tail = u.tail[:0]
	}
	// Keep back at most 3 bytes of a rune that may end in the next read.
	cut := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-3 && !eof; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				cut = i
			}
			break
		}
	}
	if !utf8.Valid(p[:cut]) {
		return 0, &decodeError{errors.New("the body is not valid UTF-8")}
	}
	u.tail = append(u.tail, p[cut:]...)
	return n, err
}

// jsonKind names the JSON form of a Go type, for error messages read by people who sent JSON.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "string (base64)"
		}
		return "array"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "number"
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode reply: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, err = w.Write(b)
	return err
}

// ValidationError is a request the plugin refuses; Field names what is wrong, in JSON path terms.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }
