package netfilter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxJumpDeletes bounds Remove's loop over duplicated jump rules.
const maxJumpDeletes = 16

// Shadow owns the shadow pod's forwarding state: the chains of its RuleSet, their jump rules
// and net.ipv4.ip_forward. Its methods are safe for concurrent use (they are serialized) and act
// on the network namespace of the calling goroutine's thread: a caller that switches namespaces
// must hold runtime.LockOSThread for the whole call, Run included. Shadow starts no goroutine.
type Shadow struct {
	rules       RuleSet
	ipt         IPTables
	log         *slog.Logger
	interval    time.Duration
	forwardPath string // ipForwardPath, or a file in tests

	mu sync.Mutex
	// forwardOld is ip_forward's value before Ensure changed it; "" when it did not change it.
	forwardOld string
	// listed maps "table/chain" to the iptables -S output last seen to match the rule set, so
	// that a quiet re-assert costs one List per chain.
	listed map[string][]string
	// saved is the rule set's part of iptables-save's output (ownedLines) taken right after an
	// Ensure that checked everything; "" when there is none or the IPTables is no Saver. A turn
	// whose Save shows the same lines changed nothing and checks nothing more.
	saved string
	// saveFailing is set from a failed Save until one works again: the failure is a warning once,
	// not at every turn.
	saveFailing bool
}

// New validates cfg and prepares a Shadow; it changes nothing in the kernel. With a nil
// cfg.IPTables it looks for the iptables binary, which fails off Linux.
func New(cfg Config) (*Shadow, error) {
	rules, err := Rules(cfg)
	if err != nil {
		return nil, err
	}
	s := &Shadow{
		rules:       rules,
		ipt:         cfg.IPTables,
		log:         cfg.Logger,
		interval:    cfg.Interval,
		forwardPath: ipForwardPath,
		listed:      map[string][]string{},
	}
	if s.ipt == nil {
		if s.ipt, err = defaultIPTables(); err != nil {
			return nil, err
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.interval == 0 {
		s.interval = DefaultInterval
	}
	return s, nil
}

// Rules returns the rule set s enforces. The caller must not modify it.
func (s *Shadow) Rules() RuleSet { return s.rules }

// Ensure makes the kernel match the rule set and reports each change it made, in words; none
// means everything was already in place. An owned chain holding anything else than its exact
// rules, in order, is flushed and refilled; a missing jump rule is inserted at position 1 (one
// found elsewhere in its chain stays where it is); ip_forward is set to 1. Foreign rules
// outside the owned chains are left alone.
//
// With a Saver, a turn after a checked one reads the tables once (iptables-save) and stops there
// when the owned chains and the jumps into them read as they did then, and ip_forward is 1.
//
// On error Ensure undoes what this call created (chains, jump rules, the ip_forward change)
// and returns no changes; a chain that existed before the call is not restored to its previous
// content. Ensure stops between steps when ctx is done.
func (s *Shadow) Ensure(ctx context.Context) (changes []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.saved != "" {
		if owned, ok := s.ownedNowLocked(); ok && owned == s.saved {
			if cur, err := readSysctl(s.forwardPath); err == nil && cur == "1" {
				return nil, nil
			}
		}
	}
	s.saved = ""

	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		changes = nil
		var errs []error
		for _, u := range slices.Backward(undo) {
			if uerr := u(); uerr != nil {
				errs = append(errs, uerr)
			}
		}
		if len(errs) > 0 {
			err = errors.Join(err, fmt.Errorf("roll back: %w", errors.Join(errs...)))
		}
	}()

	for _, c := range s.rules {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		change, created, err := s.ensureChainLocked(c)
		if created {
			undo = append(undo, func() error { return s.deleteChainLocked(c) })
		}
		if err != nil {
			return nil, err
		}
		if change != "" {
			changes = append(changes, change)
		}
	}
	for _, c := range s.rules {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ok, err := s.ipt.Exists(c.Table, c.From, c.Jump...)
		if err != nil {
			return nil, fmt.Errorf("check jump %s/%s -> %s: %w", c.Table, c.From, c.Name, err)
		}
		if ok {
			continue
		}
		if err := s.ipt.Insert(c.Table, c.From, 1, c.Jump...); err != nil {
			return nil, fmt.Errorf("insert jump %s/%s -> %s: %w", c.Table, c.From, c.Name, err)
		}
		undo = append(undo, func() error { return s.deleteJumpsLocked(c) })
		changes = append(changes, fmt.Sprintf("inserted jump %s/%s -> %s", c.Table, c.From, c.Name))
	}

	cur, err := readSysctl(s.forwardPath)
	if err != nil {
		return nil, err
	}
	if cur != "1" {
		if err := writeSysctl(s.forwardPath, "1"); err != nil {
			return nil, fmt.Errorf("net.ipv4.ip_forward is %s in this network namespace and cannot be set to 1 (%w): "+
				"the shadow pod forwards the offloaded pod's traffic. A pod's namespace takes the node's value: "+
				"enable forwarding on the node, or let the kubelet allow the unsafe sysctl net.ipv4.ip_forward "+
				"(--allowed-unsafe-sysctls) and set it in the shadow pod's securityContext", cur, err)
		}
		first := s.forwardOld == ""
		if first {
			s.forwardOld = cur
		}
		undo = append(undo, func() error {
			if first {
				s.forwardOld = ""
			}
			return writeSysctl(s.forwardPath, cur)
		})
		changes = append(changes, fmt.Sprintf("set ip_forward to 1 (was %s)", cur))
	}
	s.rememberLocked()
	return changes, nil
}

// ownedNowLocked reads the tables through the Saver and returns their ownedLines; ok is false
// without a Saver or when it fails (the caller then checks chain by chain).
func (s *Shadow) ownedNowLocked() (owned string, ok bool) {
	sv, isSaver := s.ipt.(Saver)
	if !isSaver {
		return "", false
	}
	out, err := sv.Save()
	if err != nil {
		if !s.saveFailing {
			s.log.Warn("iptables-save failed: every turn checks the rules chain by chain (several iptables processes) until it works again", "err", err)
		} else {
			s.log.Debug("iptables-save failed again; checking chain by chain", "err", err)
		}
		s.saveFailing = true
		return "", false
	}
	if s.saveFailing {
		s.log.Info("iptables-save works again: quiet turns read the tables once")
		s.saveFailing = false
	}
	return s.ownedLines(out), true
}

// rememberLocked, right after Ensure checked everything, saves the owned lines for the next
// quiet turns; only when they show each chain's rules exactly as Ensure last listed and checked
// them, and a jump into each (else someone changed them in between, and the next turn checks
// again).
func (s *Shadow) rememberLocked() {
	owned, ok := s.ownedNowLocked()
	if !ok {
		return
	}
	for _, c := range s.rules {
		var want []string
		for _, l := range s.listed[c.Table+"/"+c.Name] {
			if strings.HasPrefix(l, "-A ") {
				want = append(want, c.Table+" "+l)
			}
		}
		var got []string
		jumps := 0
		for l := range strings.Lines(owned) {
			l = strings.TrimSuffix(l, "\n")
			switch {
			case strings.HasPrefix(l, c.Table+" -A "+c.Name+" "):
				got = append(got, l)
			case strings.HasPrefix(l, c.Table+" -A "+c.From+" ") && strings.HasSuffix(l, " -j "+c.Name):
				jumps++
			}
		}
		if len(want) == 0 || !slices.Equal(got, want) || jumps == 0 {
			return
		}
	}
	s.saved = owned
}

// ownedLines is the rule set's part of an iptables-save output, by table: each owned chain's
// declaration (without its counters) and rules, and every jump rule into an owned chain.
func (s *Shadow) ownedLines(save string) string {
	var b strings.Builder
	table := ""
	for line := range strings.Lines(save) {
		line = strings.TrimRight(line, "\r\n")
		if t, ok := strings.CutPrefix(line, "*"); ok {
			table = t
			continue
		}
		for _, c := range s.rules {
			if c.Table != table {
				continue
			}
			if strings.HasPrefix(line, ":"+c.Name+" ") {
				line = ":" + c.Name
			} else if !strings.HasPrefix(line, "-A "+c.Name+" ") &&
				!(strings.HasPrefix(line, "-A "+c.From+" ") && strings.HasSuffix(line, " -j "+c.Name)) {
				continue
			}
			b.WriteString(table + " " + line + "\n")
			break
		}
	}
	return b.String()
}

// ensureChainLocked makes one owned chain exist with exactly its rules. created reports that
// the chain did not exist before, even when filling it then failed.
func (s *Shadow) ensureChainLocked(c Chain) (change string, created bool, err error) {
	key := c.Table + "/" + c.Name
	lines, lerr := s.ipt.List(c.Table, c.Name)
	if lerr != nil {
		exists, err := s.ipt.ChainExists(c.Table, c.Name)
		if err != nil {
			return "", false, fmt.Errorf("check chain %s: %w", key, err)
		}
		if exists {
			return "", false, fmt.Errorf("list chain %s: %w", key, lerr)
		}
		if err := s.ipt.ClearChain(c.Table, c.Name); err != nil {
			return "", false, fmt.Errorf("create chain %s: %w", key, err)
		}
		created = true
		change = fmt.Sprintf("created chain %s with %d rules", key, len(c.Rules))
	} else {
		if slices.Equal(lines, s.listed[key]) {
			return "", false, nil
		}
		ok, err := s.matchesLocked(c, lines)
		if err != nil {
			return "", false, err
		}
		if ok {
			s.listed[key] = lines
			return "", false, nil
		}
		if err := s.ipt.ClearChain(c.Table, c.Name); err != nil {
			return "", false, fmt.Errorf("flush chain %s: %w", key, err)
		}
		change = fmt.Sprintf("rewrote chain %s: found %d rules, want %d", key, countRules(lines), len(c.Rules))
	}
	delete(s.listed, key)
	for _, r := range c.Rules {
		if err := s.ipt.Append(c.Table, c.Name, r...); err != nil {
			return "", created, fmt.Errorf("append to chain %s: %w", key, err)
		}
	}
	if after, err := s.ipt.List(c.Table, c.Name); err == nil {
		s.listed[key] = after
	}
	return change, created, nil
}

// matchesLocked reports whether a listed chain holds exactly c.Rules in order: the comments
// give the order, iptables -C checks each rule's meaning.
func (s *Shadow) matchesLocked(c Chain, lines []string) (bool, error) {
	var got []string
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") {
			got = append(got, listedComment(l))
		}
	}
	if len(got) != len(c.Rules) {
		return false, nil
	}
	for i, r := range c.Rules {
		if got[i] != specComment(r) {
			return false, nil
		}
	}
	for _, r := range c.Rules {
		ok, err := s.ipt.Exists(c.Table, c.Name, r...)
		if err != nil {
			return false, fmt.Errorf("check rule in %s/%s: %w", c.Table, c.Name, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

func countRules(lines []string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") {
			n++
		}
	}
	return n
}

// Remove undoes Ensure: it restores ip_forward if Ensure changed it, then deletes the jump
// rules and the owned chains, last applied first. What is already gone is fine; Remove goes on
// after an error and returns them all. It needs no Ensure first: it also cleans up after an
// earlier process, except for ip_forward, whose old value only the changing process knows.
func (s *Shadow) Remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saved = ""

	var errs []error
	if s.forwardOld != "" {
		if err := writeSysctl(s.forwardPath, s.forwardOld); err != nil {
			errs = append(errs, err)
		} else {
			s.forwardOld = ""
		}
	}
	for _, c := range slices.Backward(s.rules) {
		if err := s.deleteChainLocked(c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteChainLocked removes the jump rules into c, then c itself. A missing chain means no
// jump can exist either: the kernel refuses a jump to a missing chain.
func (s *Shadow) deleteChainLocked(c Chain) error {
	key := c.Table + "/" + c.Name
	delete(s.listed, key)
	exists, err := s.ipt.ChainExists(c.Table, c.Name)
	if err != nil {
		return fmt.Errorf("check chain %s: %w", key, err)
	}
	if !exists {
		return nil
	}
	if err := s.deleteJumpsLocked(c); err != nil {
		return err
	}
	if err := s.ipt.ClearChain(c.Table, c.Name); err != nil {
		return fmt.Errorf("flush chain %s: %w", key, err)
	}
	if err := s.ipt.DeleteChain(c.Table, c.Name); err != nil {
		return fmt.Errorf("delete chain %s: %w", key, err)
	}
	return nil
}

// deleteJumpsLocked deletes every copy of c's jump rule.
func (s *Shadow) deleteJumpsLocked(c Chain) error {
	for range maxJumpDeletes {
		ok, err := s.ipt.Exists(c.Table, c.From, c.Jump...)
		if err != nil {
			return fmt.Errorf("check jump %s/%s -> %s: %w", c.Table, c.From, c.Name, err)
		}
		if !ok {
			return nil
		}
		if err := s.ipt.Delete(c.Table, c.From, c.Jump...); err != nil {
			return fmt.Errorf("delete jump %s/%s -> %s: %w", c.Table, c.From, c.Name, err)
		}
	}
	return fmt.Errorf("delete jump %s/%s -> %s: still there after %d deletions", c.Table, c.From, c.Name, maxJumpDeletes)
}
