package plugin

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
)

// TestPprofOptIn: Go's profiles are served only with Config.Pprof (app.pprof).
func TestPprofOptIn(t *testing.T) {
	for _, on := range []bool{false, true} {
		p, err := New(Config{Client: fake.NewClientset(), Pprof: on})
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
			rec := httptest.NewRecorder()
			p.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			if rec.Code != want {
				t.Errorf("pprof %v: GET %s answered %d, want %d", on, path, rec.Code, want)
			}
		}
	}
}
