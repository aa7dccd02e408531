package conformance

import (
	"bytes"
	"encoding/xml"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSummarizeNeverCountsSkipsAsPasses(t *testing.T) {
	results := []Result{
		{Case: "a", Check: "offloaded", Status: Pass},
		{Case: "a", Check: "log", Status: Skip, Detail: NeedsRealNodes},
		{Case: "b", Check: "log", Status: Skip, Detail: NeedsRealNodes},
		{Case: "c", Check: "offloaded", Status: Pass},
		{Case: "c", Check: "running", Status: Fail, Detail: "phase Pending"},
	}
	got := Summarize(results, map[string]time.Duration{"a": time.Second})
	var status []Status
	for _, c := range got {
		status = append(status, c.Status)
	}
	if diff := cmp.Diff([]Status{Pass, Skip, Fail}, status); diff != "" {
		t.Errorf("case status (-want +got):\n%s", diff)
	}
	var table bytes.Buffer
	WriteTable(&table, got)
	for _, want := range []string{`c / running:\n    phase Pending`, `(?m)^total\s+2\s+1\s+2\s+0\s*$`, regexp.QuoteMeta(NeedsRealNodes)} {
		if !regexp.MustCompile(want).MatchString(table.String()) {
			t.Errorf("table does not match %q:\n%s", want, table.String())
		}
	}
}

func TestJUnit(t *testing.T) {
	cases := Summarize([]Result{
		{Case: "a", Check: "offloaded", Status: Pass, Duration: time.Second},
		{Case: "a", Check: "log <x>", Status: Skip, Detail: NeedsRealNodes},
		{Case: "a", Check: "running", Status: Fail, Detail: "phase Pending & stuck"},
	}, nil)
	var b bytes.Buffer
	if err := WriteJUnit(&b, cases, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("report is not XML: %v\n%s", err, b.String())
	}
	if doc.Tests != 3 || doc.Failures != 1 || doc.Skipped != 1 || len(doc.Suites) != 1 {
		t.Fatalf("counts: %+v", doc)
	}
	c := doc.Suites[0].Cases
	if c[1].Skipped == nil || c[1].Skipped.Message != NeedsRealNodes || c[2].Failure == nil || c[2].Failure.Body != "phase Pending & stuck" {
		t.Errorf("testcases: %+v", c)
	}
}

func TestCasesAreWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for i, c := range Cases {
		if seen[c.Name] || c.Pod == nil || c.Doc == "" || len(c.Pod.Spec.Containers) == 0 {
			t.Errorf("case %q: duplicate name, no pod, no doc or no container", c.Name)
		}
		seen[c.Name] = true
		// Past 63 characters the VK (f6321757) puts the shadow objects in a truncated namespace it
		// never creates.
		ns := caseNamespace(i)
		if label := c.Pod.Name + "-" + ns + "-" + ns + "-wstunnel"; len(label) > 63 {
			t.Errorf("case %q: %q is too long for the VK's shadow names", c.Name, label)
		}
		for _, cl := range c.Clients {
			if _, ok := c.ClientWant[cl.Name]; !ok {
				t.Errorf("case %q: client %s has no expectation", c.Name, cl.Name)
			}
		}
	}
}
