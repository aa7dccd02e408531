package plugin

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// iniFile is a configuration file in the syntax of Python's configparser, with which the Python
// InterLink Kubernetes plugin reads its config.ini: "[section]" headers, "key = value" or
// "key: value" lines (the first = or : ends the key), full-line comments starting with # or ;,
// values continued on lines indented deeper than their key, keys compared in lower case, a
// [DEFAULT] section whose keys every section inherits, and %(key)s references to another key of
// the same section or of [DEFAULT] (%% is a literal %), resolved when a value is read. As there,
// a repeated section or key is an error, and so is a line that is neither a header, a key nor a
// comment. Inline comments are part of the value, as there.
type iniFile struct {
	sections []*iniSection // in file order, [DEFAULT] excluded
	defaults *iniSection
}

// iniSection is one section: its keys in file order and their raw (uninterpolated) values.
type iniSection struct {
	name  string
	order []string
	keys  map[string]*iniEntry
}

type iniEntry struct {
	lines []string
	line  int // where the key is, for messages
}

func (e *iniEntry) raw() string { return strings.TrimRight(strings.Join(e.lines, "\n"), " \t\n") }

const iniDefaultSection = "DEFAULT"

// iniSyntaxError is a line configparser would refuse.
type iniSyntaxError struct {
	Line   int
	Reason string
}

func (e *iniSyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// parseINI reads an INI file as configparser does (see iniFile).
func parseINI(data []byte) (*iniFile, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("the file is not UTF-8")
	}
	text := strings.TrimPrefix(string(data), "\ufeff")
	text = strings.ReplaceAll(text, "\r\n", "\n")
	f := &iniFile{defaults: newINISection(iniDefaultSection)}
	seen := map[string]bool{}
	var (
		cur    *iniSection
		entry  *iniEntry // the key whose value continues on deeper-indented lines
		indent int
	)
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		value := strings.TrimSpace(line)
		if strings.HasPrefix(value, "#") || strings.HasPrefix(value, ";") {
			continue // a comment neither ends nor extends a value
		}
		if value == "" {
			if entry != nil {
				entry.lines = append(entry.lines, "") // kept inside a value, trimmed at its end
			}
			continue
		}
		level := len(line) - len(strings.TrimLeft(line, " \t\v\f"))
		if cur != nil && entry != nil && level > indent {
			entry.lines = append(entry.lines, value)
			continue
		}
		indent = level
		if name, ok := iniHeader(value); ok {
			entry = nil
			if name == iniDefaultSection {
				cur = f.defaults
				continue
			}
			if seen[name] {
				return nil, &iniSyntaxError{n, fmt.Sprintf("section [%s] appears twice", name)}
			}
			seen[name] = true
			cur = newINISection(name)
			f.sections = append(f.sections, cur)
			continue
		}
		if cur == nil {
			return nil, &iniSyntaxError{n, "a key before the first [section] header"}
		}
		key, val, ok := cutINIKey(value)
		if !ok {
			return nil, &iniSyntaxError{n, fmt.Sprintf("%q is neither a [section], a key = value nor a comment", clip(value, 40))}
		}
		if _, dup := cur.keys[key]; dup {
			return nil, &iniSyntaxError{n, fmt.Sprintf("key %q appears twice in [%s]", key, cur.name)}
		}
		entry = &iniEntry{lines: []string{val}, line: n}
		cur.keys[key] = entry
		cur.order = append(cur.order, key)
	}
	return f, nil
}

func newINISection(name string) *iniSection {
	return &iniSection{name: name, keys: map[string]*iniEntry{}}
}

// iniHeader matches configparser's "[" anything "]" at the start of a line; the name runs to the
// last "]".
func iniHeader(value string) (string, bool) {
	if !strings.HasPrefix(value, "[") {
		return "", false
	}
	end := strings.LastIndexByte(value, ']')
	if end < 2 {
		return "", false
	}
	return value[1:end], true
}

// cutINIKey splits "key = value" or "key: value" at the first = or :, lower-casing the key.
func cutINIKey(value string) (key, val string, ok bool) {
	i := strings.IndexAny(value, "=:")
	if i < 0 {
		return "", "", false
	}
	key = strings.ToLower(strings.TrimSpace(value[:i]))
	if key == "" {
		return "", "", false
	}
	return key, strings.TrimSpace(value[i+1:]), true
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// section returns the named section, nil when the file has none.
func (f *iniFile) section(name string) *iniSection {
	for _, s := range f.sections {
		if s.name == name {
			return s
		}
	}
	return nil
}

// lookup returns the raw entry of key in section, falling back on [DEFAULT] as configparser does
// (for a section the file has: configparser gives nothing from an absent section).
func (f *iniFile) lookup(section, key string) *iniEntry {
	s := f.section(section)
	if s == nil {
		return nil
	}
	if e, ok := s.keys[key]; ok {
		return e
	}
	return f.defaults.keys[key]
}

// get returns the value of section.key with its %(name)s references resolved; ok is false when
// the key is absent.
func (f *iniFile) get(section, key string) (value string, ok bool, err error) {
	e := f.lookup(section, key)
	if e == nil {
		return "", false, nil
	}
	var b strings.Builder
	if err := f.interpolate(&b, section, e.raw(), 1); err != nil {
		return "", true, fmt.Errorf("line %d: %w", e.line, err)
	}
	return b.String(), true, nil
}

// iniRef is configparser's %(name)s.
var iniRef = regexp.MustCompile(`^%\(([^)]+)\)s`)

// maxINIDepth is configparser's limit on nested references.
const maxINIDepth = 10

func (f *iniFile) interpolate(b *strings.Builder, section, rest string, depth int) error {
	if depth > maxINIDepth {
		return fmt.Errorf("references nested deeper than %d (a loop?)", maxINIDepth)
	}
	for rest != "" {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			b.WriteString(rest)
			return nil
		}
		b.WriteString(rest[:i])
		rest = rest[i:]
		switch {
		case strings.HasPrefix(rest, "%%"):
			b.WriteByte('%')
			rest = rest[2:]
		case strings.HasPrefix(rest, "%("):
			m := iniRef.FindStringSubmatch(rest)
			if m == nil {
				return fmt.Errorf("bad reference %q: write %%(name)s, or %%%% for a literal %%", clip(rest, 20))
			}
			rest = rest[len(m[0]):]
			name := strings.ToLower(m[1])
			e := f.lookup(section, name)
			if e == nil {
				return fmt.Errorf("%%(%s)s names no key of [%s] or [DEFAULT]", name, section)
			}
			if err := f.interpolate(b, section, e.raw(), depth+1); err != nil {
				return err
			}
		default:
			return fmt.Errorf("'%%' must be followed by '%%' or '(' (a literal %% is written %%%%), found %q", clip(rest, 20))
		}
	}
	return nil
}
