package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDecodeEach: /status bodies are decoded one element at a time with decodeJSON's refusals,
// whatever the reads' boundaries (one byte at a time cuts every rune and token).
func TestDecodeEach(t *testing.T) {
	pod := `{"metadata":{"name":"a","namespace":"n","uid":"u"},"spec":{"containers":[{"name":"c","image":"é"}]}}`
	tests := []struct {
		name, body string
		names      []string
		code       int    // of the refusal, 0 for none
		field      string // of a ValidationError
	}{
		{name: "two pods", body: "[" + pod + ", " + strings.Replace(pod, `"a"`, `"b"`, 1) + "]\n", names: []string{"a", "b"}},
		{name: "the ping", body: " [ ] ", names: nil},
		{name: "empty", body: "", code: http.StatusBadRequest},
		{name: "null", body: "null", code: http.StatusBadRequest},
		{name: "an object", body: pod, code: http.StatusUnprocessableEntity, field: "(body)"},
		{name: "wrong field type", body: `[{"metadata":{"uid":7}}]`, code: http.StatusUnprocessableEntity, field: "[].metadata.uid"},
		{name: "trailing garbage", body: "[" + pod + "] x", code: http.StatusBadRequest},
		{name: "two arrays", body: "[] []", code: http.StatusBadRequest},
		{name: "cut short", body: "[" + pod, code: http.StatusBadRequest},
		{name: "invalid UTF-8", body: "[" + strings.Replace(pod, "é", "\xff", 1) + "]", code: http.StatusBadRequest},
		{name: "a rune cut at the end", body: "[" + pod + "]\xc3", code: http.StatusBadRequest},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(tt.body)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			var names []string
			err := decodeEach(r, func(p *corev1.Pod) error { names = append(names, p.Name); return nil })
			if tt.code == 0 {
				if err != nil || strings.Join(names, ",") != strings.Join(tt.names, ",") {
					t.Errorf("%s (one byte a read: %v): %v, pods %v, want %v", tt.name, oneByte, err, names, tt.names)
				}
				continue
			}
			w := httptest.NewRecorder()
			writeError(w, err)
			if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.field) {
				t.Errorf("%s (one byte a read: %v): %v → %d %s, want %d naming %q", tt.name, oneByte, err, w.Code, w.Body, tt.code, tt.field)
			}
		}
	}
	t.Run("over the limit", func(t *testing.T) {
		body := http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader("["+pod+","+pod+"]")), 150)
		err := decodeEach(body, func(*corev1.Pod) error { return nil })
		var merr *http.MaxBytesError
		if !errors.As(err, &merr) {
			t.Errorf("%v, want the body's limit", err)
		}
	})
	t.Run("an element's error stops the stream", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := decodeEach(strings.NewReader("["+pod+","+pod+"]"), func(*corev1.Pod) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Errorf("%v after %d pods, want stop after 1", err, n)
		}
	})
}

// TestStatusPod: what /status decodes of each pod is what Status reads of it, the rest skipped.
func TestStatusPod(t *testing.T) {
	full := fullPod(newUID(), "web-0", "team-a").Pod
	full.CreationTimestamp = metav1.NewTime(time.Date(2026, 12, 5, 11, 0, 0, 0, time.UTC))
	full.Annotations = map[string]string{AnnotVKJobID: "9cfafd56", "interlink.eu/pod-vpn": "true"}
	body, err := json.Marshal([]corev1.Pod{full})
	if err != nil {
		t.Fatal(err)
	}
	var got []*corev1.Pod
	if err := decodeEach(bytes.NewReader(body), func(sp *statusPod) error { got = append(got, sp.pod()); return nil }); err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: full.Name, Namespace: full.Namespace, UID: full.UID, CreationTimestamp: full.CreationTimestamp,
		Annotations: map[string]string{AnnotVKJobID: "9cfafd56"}}}
	for _, c := range full.Spec.InitContainers {
		want.Spec.InitContainers = append(want.Spec.InitContainers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range full.Spec.Containers {
		want.Spec.Containers = append(want.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	if len(want.Spec.InitContainers) == 0 || len(want.Spec.Containers) == 0 {
		t.Fatalf("fullPod has %d init containers and %d containers: the test needs both kinds", len(want.Spec.InitContainers), len(want.Spec.Containers))
	}
	if len(got) != 1 || !equality.Semantic.DeepEqual(got[0], want) {
		t.Errorf("decoded %+v\nwant %+v", got, want)
	}
}

// TestUTF8Reader: whatever the reads' boundaries, the body passes through whole exactly when it is
// UTF-8 (every cut of a 2-, 3- and 4-byte rune, U+FFFD itself, and bytes that no rune starts or
// ends with).
func TestUTF8Reader(t *testing.T) {
	bodies := []string{"", "a", "é", "aé€😀b", "\uFFFD", "€😀", "\xff", "a\xc3", "\xc3a", "\xe2\x82", "€\x82", "\xf0\x9f\x98", "\xed\xa0\x80", "\xc0\xaf", strings.Repeat("ab€", 300) + "\xe2"}
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"halves":   iotest.HalfReader,
		"with EOF": iotest.DataErrReader,
	}
	for _, body := range bodies {
		for name, wrap := range readers {
			got, err := io.ReadAll(&utf8Reader{r: wrap(strings.NewReader(body))})
			var derr *decodeError
			if valid := utf8.ValidString(body); valid != (err == nil) || (!valid && !errors.As(err, &derr)) || (valid && string(got) != body) {
				t.Errorf("%q read %s: %q, %v; UTF-8: %v", body, name, got, err, valid)
			}
		}
	}
}
