package vkmesh

import "strings"

// shCommand is one simple command of a shell script: its words after quote removal, with
// variables and command substitutions left as written ("$WG_IFACE" stays "$WG_IFACE"), and the
// here-documents it reads.
type shCommand struct {
	words    []string
	heredocs []heredoc
}

// heredoc is the body of a here-document and the word that ends it.
type heredoc struct {
	delim string
	body  string
}

// lexShell splits a script into simple commands. It knows enough of the POSIX shell grammar to
// read what the virtual kubelet's mesh templates render — quoting, escapes, comments, line
// continuations, $(…), ${…} and backquotes, control operators, redirections and here-documents —
// and never expands or runs anything. Redirection targets are dropped from the words. It accepts
// any input: unterminated quotes and here-documents end at the end of the script.
func lexShell(s string) []shCommand {
	l := &shLexer{s: s}
	l.run()
	return l.cmds
}

type shLexer struct {
	s    string
	i    int
	cmds []shCommand

	cur      shCommand
	word     strings.Builder
	inWord   bool
	dropWord bool // the next word is a redirection target
	pending  []pendingHeredoc
}

// pendingHeredoc is a here-document whose body starts after the current line.
type pendingHeredoc struct {
	delim     string
	stripTabs bool
	cmd, doc  int // indexes in cmds and in its heredocs of the command that reads it
}

func (l *shLexer) run() {
	for l.i < len(l.s) {
		c := l.s[l.i]
		switch {
		case c == '\n':
			l.endCommand()
			l.i++
			l.readHeredocs()
		case c == ' ' || c == '\t' || c == '\r':
			l.endWord()
			l.i++
		case c == '#' && !l.inWord:
			if j := strings.IndexByte(l.s[l.i:], '\n'); j >= 0 {
				l.i += j
			} else {
				l.i = len(l.s)
			}
		case c == '\\':
			switch {
			case l.i+1 >= len(l.s):
				l.i++
			case l.s[l.i+1] == '\n': // line continuation
				l.i += 2
			default:
				l.add(l.s[l.i+1 : l.i+2])
				l.i += 2
			}
		case c == '\'':
			j := strings.IndexByte(l.s[l.i+1:], '\'')
			if j < 0 {
				l.add(l.s[l.i+1:])
				l.i = len(l.s)
			} else {
				l.add(l.s[l.i+1 : l.i+1+j])
				l.i += j + 2
			}
		case c == '"':
			l.doubleQuoted()
		case c == '$' || c == '`':
			end := expansionEnd(l.s, l.i)
			l.add(l.s[l.i:end])
			l.i = end
		case c == ';' || c == '|' || c == '(' || c == ')':
			l.endCommand()
			l.i++
		case c == '&':
			if l.i+1 < len(l.s) && l.s[l.i+1] == '>' { // &> and &>> redirect both outputs
				l.redirect()
				continue
			}
			l.endCommand()
			l.i++
		case c == '<' || c == '>':
			if strings.HasPrefix(l.s[l.i:], "<<") && !strings.HasPrefix(l.s[l.i:], "<<<") {
				l.heredocOperator()
				continue
			}
			l.redirect()
		default:
			l.add(l.s[l.i : l.i+1])
			l.i++
		}
	}
	l.endCommand()
	// Here-documents announced on the last line have no body.
	l.pending = nil
}

func (l *shLexer) add(s string) {
	l.word.WriteString(s)
	l.inWord = true
}

func (l *shLexer) endWord() {
	if !l.inWord {
		return
	}
	if l.dropWord {
		l.dropWord = false
	} else {
		l.cur.words = append(l.cur.words, l.word.String())
	}
	l.word.Reset()
	l.inWord = false
}

func (l *shLexer) endCommand() {
	l.endWord()
	l.dropWord = false
	if len(l.cur.words) > 0 || len(l.cur.heredocs) > 0 {
		l.cmds = append(l.cmds, l.cur)
	}
	l.cur = shCommand{}
}

// doubleQuoted reads "…": backslash escapes only $ ` " \ and newline; expansions stay literal.
func (l *shLexer) doubleQuoted() {
	l.inWord = true
	l.i++
	for l.i < len(l.s) {
		c := l.s[l.i]
		switch {
		case c == '"':
			l.i++
			return
		case c == '\\' && l.i+1 < len(l.s):
			switch n := l.s[l.i+1]; n {
			case '\n':
			case '$', '`', '"', '\\':
				l.word.WriteByte(n)
			default:
				l.word.WriteByte('\\')
				l.word.WriteByte(n)
			}
			l.i += 2
		case c == '$' || c == '`':
			end := expansionEnd(l.s, l.i)
			l.word.WriteString(l.s[l.i:end])
			l.i = end
		default:
			l.word.WriteByte(c)
			l.i++
		}
	}
}

// expansionEnd returns the end of the expansion at s[i] ($(…), $((…)), ${…}, `…`, or a lone $);
// the caller keeps the text as written.
func expansionEnd(s string, i int) int {
	if s[i] == '`' {
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case '\\':
				j++
			case '`':
				return j + 1
			}
		}
		return len(s)
	}
	if i+1 < len(s) && (s[i+1] == '(' || s[i+1] == '{') {
		closing := byte(')')
		if s[i+1] == '{' {
			closing = '}'
		}
		return balancedEnd(s, i+1, s[i+1], closing)
	}
	return i + 1
}

// balancedEnd returns the index just past the bracket that closes the one at s[start], skipping
// quoted text; len(s) if it is never closed.
func balancedEnd(s string, start int, open, closing byte) int {
	depth := 0
	for j := start; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '\'':
			k := strings.IndexByte(s[j+1:], '\'')
			if k < 0 {
				return len(s)
			}
			j += k + 1
		case '"':
			for j++; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
				}
			}
		case open:
			depth++
		case closing:
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(s)
}

// redirect reads a redirection operator (>, >>, <, >&, 2>&1, &>, <>) and drops its target word.
func (l *shLexer) redirect() {
	// A file descriptor number written before the operator ("2>") is not a word.
	if l.inWord && isDigits(l.word.String()) {
		l.word.Reset()
		l.inWord = false
	}
	l.endWord()
	l.i++ // the first of & < >
	for l.i < len(l.s) && strings.IndexByte("<>|", l.s[l.i]) >= 0 {
		l.i++
	}
	if l.i < len(l.s) && l.s[l.i] == '&' { // >&2, <&0, >&-: the target is a descriptor
		l.i++
		for l.i < len(l.s) && (l.s[l.i] >= '0' && l.s[l.i] <= '9' || l.s[l.i] == '-') {
			l.i++
		}
		return
	}
	l.dropWord = true
}

// heredocOperator reads << or <<- and the delimiter word; the body is read after the line ends.
func (l *shLexer) heredocOperator() {
	l.endWord()
	l.i += 2
	strip := false
	if l.i < len(l.s) && l.s[l.i] == '-' {
		strip = true
		l.i++
	}
	for l.i < len(l.s) && (l.s[l.i] == ' ' || l.s[l.i] == '\t') {
		l.i++
	}
	var delim strings.Builder
	for l.i < len(l.s) {
		c := l.s[l.i]
		if strings.IndexByte(" \t\r\n;&|<>()", c) >= 0 {
			break
		}
		if c == '\'' || c == '"' {
			j := strings.IndexByte(l.s[l.i+1:], c)
			if j < 0 {
				delim.WriteString(l.s[l.i+1:])
				l.i = len(l.s)
				break
			}
			delim.WriteString(l.s[l.i+1 : l.i+1+j])
			l.i += j + 2
			continue
		}
		if c == '\\' && l.i+1 < len(l.s) {
			l.i++
			c = l.s[l.i]
		}
		delim.WriteByte(c)
		l.i++
	}
	// The command that reads the body is the current one; it is appended at len(cmds).
	l.pending = append(l.pending, pendingHeredoc{delim: delim.String(), stripTabs: strip, cmd: len(l.cmds), doc: len(l.cur.heredocs)})
	l.cur.heredocs = append(l.cur.heredocs, heredoc{delim: delim.String()})
}

// readHeredocs reads the bodies announced on the line that just ended, in order. A delimiter
// line matches with surrounding blanks ignored, which also accepts a template indented as a whole.
func (l *shLexer) readHeredocs() {
	pending := l.pending
	l.pending = nil
	for _, p := range pending {
		var body strings.Builder
		for l.i < len(l.s) {
			end := strings.IndexByte(l.s[l.i:], '\n')
			next := len(l.s)
			if end >= 0 {
				end += l.i
				next = end + 1
			} else {
				end = len(l.s)
			}
			line := l.s[l.i:end]
			l.i = next
			if strings.TrimSpace(line) == p.delim {
				break
			}
			if p.stripTabs {
				line = strings.TrimLeft(line, "\t")
			}
			body.WriteString(line)
			body.WriteByte('\n')
		}
		if p.cmd < len(l.cmds) && p.doc < len(l.cmds[p.cmd].heredocs) {
			l.cmds[p.cmd].heredocs[p.doc].body = body.String()
		}
	}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
