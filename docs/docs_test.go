package docs

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/google/go-cmp/cmp"
)

// repoRoot is the repository, seen from this package's directory (where go test runs).
const repoRoot = ".."

// markdown is one documentation file, split into what the checks need.
type markdown struct {
	name    string          // path from the repository root, for messages
	anchors map[string]bool // GitHub-style anchors of its headings
	links   []ref           // link destinations outside code
	code    []ref           // code span contents and code block lines (comments removed)
}

// ref is a piece of text and the 1-based line it starts on.
type ref struct {
	line int
	text string
}

var (
	fenceRE   = regexp.MustCompile("^ {0,3}(```+|~~~+)")
	headingRE = regexp.MustCompile(`^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$`)
	spanRE    = regexp.MustCompile("(`+)([^`]+?)`+")
	linkRE    = regexp.MustCompile(`\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
	refDefRE  = regexp.MustCompile(`(?m)^ {0,3}\[[^\]]+\]:\s*(\S+)`)
	schemeRE  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
	targetRE  = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	ruleRE    = regexp.MustCompile(`^([a-z][a-z0-9-]*):([^=]|$)`)
)

// docFiles returns the checked files: the front page and every page of docs/, as paths from this
// directory.
func docFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) == 0 {
		t.Fatal("no *.md in docs/")
	}
	return append([]string{filepath.Join(repoRoot, "README.md")}, pages...)
}

// displayName turns a path from this directory into one from the repository root.
func displayName(path string) string {
	path = filepath.ToSlash(filepath.Clean(path))
	switch {
	case filepath.IsAbs(path):
		return path
	case strings.HasPrefix(path, "../"):
		return strings.TrimPrefix(path, "../")
	}
	return "docs/" + path
}

// parse reads a Markdown file. Code blocks and code spans are kept apart from the prose: links and
// headings count only outside them, make commands only inside them.
func parse(path string) (*markdown, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	md := &markdown{name: displayName(path), anchors: map[string]bool{}}
	lines := strings.Split(string(data), "\n")
	prose := make([]string, len(lines)) // the lines outside code blocks; blank inside them
	seen := map[string]int{}
	fence := ""
	for i, line := range lines {
		if m := fenceRE.FindStringSubmatch(line); m != nil {
			switch {
			case fence == "":
				fence = m[1]
				continue
			case strings.HasPrefix(m[1], fence[:1]) && len(m[1]) >= len(fence):
				fence = ""
				continue
			}
		}
		if fence != "" {
			if code := stripComment(line); strings.TrimSpace(code) != "" {
				md.code = append(md.code, ref{i + 1, code})
			}
			continue
		}
		prose[i] = line
		if m := headingRE.FindStringSubmatch(line); m != nil {
			a := anchor(m[2])
			if n := seen[a]; n > 0 {
				seen[a] = n + 1
				a += "-" + strconv.Itoa(n)
			} else {
				seen[a] = 1
			}
			md.anchors[a] = true
		}
	}
	text := strings.Join(prose, "\n")
	lineAt := func(off int) int { return strings.Count(text[:off], "\n") + 1 }
	// Code spans may run over a line break; blank them out (keeping the line breaks) so that
	// the links are looked for in prose only.
	masked := []byte(text)
	for _, m := range spanRE.FindAllStringSubmatchIndex(text, -1) {
		md.code = append(md.code, ref{lineAt(m[4]), text[m[4]:m[5]]})
		for j := m[0]; j < m[1]; j++ {
			if masked[j] != '\n' {
				masked[j] = ' '
			}
		}
	}
	for _, re := range []*regexp.Regexp{linkRE, refDefRE} {
		for _, m := range re.FindAllSubmatchIndex(masked, -1) {
			md.links = append(md.links, ref{lineAt(m[2]), string(masked[m[2]:m[3]])})
		}
	}
	return md, nil
}

// stripComment drops a shell comment from a code block line.
func stripComment(line string) string {
	for i, r := range line {
		if r == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			return line[:i]
		}
	}
	return line
}

// anchor is the fragment GitHub gives a heading: lower case, backticks and punctuation other
// than '-' and '_' removed, spaces turned into '-'.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// makeTargets returns the targets of every make command in a piece of code, skipping make's
// flags and variable assignments (REGISTRY=x make push, make -s build, make manifests [REGISTRY=x]).
func makeTargets(code string) []string {
	var targets []string
	fields := strings.Fields(code)
	for i, f := range fields {
		if f != "make" || (i > 0 && !startsCommand(fields[i-1])) {
			continue
		}
		for j := i + 1; j < len(fields); j++ {
			a := fields[j]
			switch {
			case a == "-C" || a == "-f" || a == "-I" || a == "-o" || a == "-W":
				j++ // the flag's argument
			case strings.HasPrefix(a, "-") || strings.Contains(a, "="):
			case targetRE.MatchString(a):
				targets = append(targets, a)
			default:
				j = len(fields)
			}
		}
	}
	return targets
}

// startsCommand reports whether a word can come right before a command's name.
func startsCommand(prev string) bool {
	switch prev {
	case "&&", "||", ";", "|", "(", "sudo", "time", "nice", "then", "do":
		return true
	}
	return strings.Contains(prev, "=") || strings.HasSuffix(prev, ";")
}

// makefileTargets returns the targets the Makefile defines.
func makefileTargets(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	targets := map[string]bool{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if m := ruleRE.FindStringSubmatch(s.Text()); m != nil {
			targets[m[1]] = true
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if len(targets) == 0 {
		t.Fatal("no target found in the Makefile")
	}
	return targets
}

func TestAnchor(t *testing.T) {
	for _, tc := range []struct {
		heading, want string
	}{
		{"How pods end", "how-pods-end"},
		{"Netstack mode (no privilege)", "netstack-mode-no-privilege"},
		{"The plugin: `interlink-k8s-plugin`", "the-plugin-interlink-k8s-plugin"},
		{"Its `config.ini`", "its-configini"},
		{"Known defects of InterLink's VK", "known-defects-of-interlinks-vk"},
		{"Latency, flow setup and 10,000 flows", "latency-flow-setup-and-10000-flows"},
		{"snake_case and kebab-case", "snake_case-and-kebab-case"},
	} {
		t.Run(tc.heading, func(t *testing.T) {
			if got := anchor(tc.heading); got != tc.want {
				t.Errorf("anchor(%q) = %q, want %q", tc.heading, got, tc.want)
			}
		})
	}
}

func TestMakeTargetsOf(t *testing.T) {
	for _, tc := range []struct {
		name, code string
		want       []string
	}{
		{"plain", "make bench-mesh", []string{"bench-mesh"}},
		{"flags", "make -s build", []string{"build"}},
		{"long flag", "make --no-print-directory conformance", []string{"conformance"}},
		{"flag with argument", "make -C sub test", []string{"test"}},
		{"variable before", "REGISTRY=registry.example:5000/team make push", []string{"push"}},
		{"variable after", "make push REGISTRY=host/path", []string{"push"}},
		{"optional variable", "make manifests [REGISTRY=host/path]", []string{"manifests"}},
		{"two targets", "make clean build", []string{"clean", "build"}},
		{"chained", "make images && make push", []string{"images", "push"}},
		{"not a command", "the VK make shadow pods", nil},
		{"alone", "make", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, makeTargets(tc.code)); diff != "" {
				t.Errorf("makeTargets(%q) (-want +got):\n%s", tc.code, diff)
			}
		})
	}
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.md")
	text := "# Title\n\nSee [a](b.md#c) and `[not](a link)`, `make\nbuild`.\n\n```sh\n# [no](link)\nmake test # make lint\n```\n\n## Title\n[d]: e.md\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	md, err := parse(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &markdown{
		name:    md.name,
		anchors: map[string]bool{"title": true, "title-1": true},
		links:   []ref{{3, "b.md#c"}, {12, "e.md"}},
		code:    []ref{{8, "make test "}, {3, "[not](a link)"}, {3, "make\nbuild"}},
	}
	if diff := cmp.Diff(want, md, cmp.AllowUnexported(markdown{}, ref{})); diff != "" {
		t.Errorf("parse (-want +got):\n%s", diff)
	}
}

// TestLinks checks that every relative link of the documentation names a file of the repository
// and, for a Markdown file, a heading it has.
func TestLinks(t *testing.T) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	parsed := map[string]*markdown{}
	load := func(path string) (*markdown, error) {
		if md, ok := parsed[path]; ok {
			return md, nil
		}
		md, err := parse(path)
		if err == nil {
			parsed[path] = md
		}
		return md, err
	}
	for _, file := range docFiles(t) {
		t.Run(displayName(file), func(t *testing.T) {
			md, err := load(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range md.links {
				if schemeRE.MatchString(l.text) || strings.HasPrefix(l.text, "//") {
					continue
				}
				path, frag, _ := strings.Cut(l.text, "#")
				target := file
				if path != "" {
					target = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
					abs, err := filepath.Abs(target)
					if err != nil || (abs != root && !strings.HasPrefix(abs, root+string(filepath.Separator))) {
						t.Errorf("%s:%d: link %s: outside the repository", md.name, l.line, l.text)
						continue
					}
					if _, err := os.Stat(target); err != nil {
						t.Errorf("%s:%d: link %s: no such file", md.name, l.line, l.text)
						continue
					}
				}
				if frag == "" || !strings.HasSuffix(target, ".md") {
					continue
				}
				tmd, err := load(target)
				if err != nil {
					t.Errorf("%s:%d: link %s: %v", md.name, l.line, l.text, err)
					continue
				}
				if !tmd.anchors[frag] {
					t.Errorf("%s:%d: link %s: no heading #%s in %s", md.name, l.line, l.text, frag, tmd.name)
				}
			}
		})
	}
}

// TestMakeTargets checks that every make command the documentation shows names a target of the
// Makefile.
func TestMakeTargets(t *testing.T) {
	defined := makefileTargets(t)
	for _, file := range docFiles(t) {
		t.Run(displayName(file), func(t *testing.T) {
			md, err := parse(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range md.code {
				for _, target := range makeTargets(c.text) {
					if !defined[target] {
						t.Errorf("%s:%d: make %s: no such target in the Makefile (in %q)", md.name, c.line, target, c.text)
					}
				}
			}
		})
	}
}
