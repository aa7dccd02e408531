package imagebuild

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"path"
	"strings"
)

// multiarch is Debian's library directory name for each ELF machine the images are built for.
var multiarch = map[elf.Machine]string{
	elf.EM_X86_64:  "x86_64-linux-gnu",
	elf.EM_AARCH64: "aarch64-linux-gnu",
}

// elfMachine is the ELF machine of each GOARCH.
var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// checkELF proves that every ELF file of the tree can be loaded inside it: it is built for goarch,
// its interpreter (PT_INTERP) exists in the tree, and each library it needs (DT_NEEDED) is found
// where the loader would look (its RUNPATH, then the multiarch and plain lib directories), following
// symlinks in the tree. It returns every problem found, joined.
func checkELF(t *Tree, goarch string) error {
	want := elfMachine[goarch]
	dirs := []string{"lib/" + multiarch[want], "usr/lib/" + multiarch[want], "lib", "usr/lib"}
	var errs []error
	for _, p := range t.Paths() {
		e := t.entries[p]
		if e.Type != File || !bytes.HasPrefix(e.Data, []byte(elf.ELFMAG)) {
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(e.Data))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: read ELF: %w", p, err))
			continue
		}
		if f.Machine != want {
			errs = append(errs, fmt.Errorf("%s: built for %s, the image is %s", p, f.Machine, goarch))
			continue
		}
		for _, prog := range f.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				errs = append(errs, fmt.Errorf("%s: read interpreter: %w", p, err))
				continue
			}
			interp := strings.TrimRight(string(b), "\x00")
			if _, ie, err := t.Resolve(interp); err != nil || ie.Type != File {
				errs = append(errs, fmt.Errorf("%s: interpreter %s is not in the image", p, interp))
			}
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: read DT_NEEDED: %w", p, err))
			continue
		}
		search := append(runpath(f, path.Dir(p)), dirs...)
		for _, lib := range needed {
			if !findLib(t, search, lib) {
				errs = append(errs, fmt.Errorf("%s: needs %s, found in none of %s", p, lib, strings.Join(search, ", ")))
			}
		}
		f.Close()
	}
	return errors.Join(errs...)
}

// runpath returns the directories of DT_RUNPATH and DT_RPATH, $ORIGIN expanded.
func runpath(f *elf.File, origin string) []string {
	var dirs []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				dirs = append(dirs, cleanPath(strings.ReplaceAll(d, "$ORIGIN", "/"+origin)))
			}
		}
	}
	return dirs
}

func findLib(t *Tree, dirs []string, lib string) bool {
	for _, d := range dirs {
		if _, e, err := t.Resolve(path.Join(d, lib)); err == nil && e.Type == File {
			return true
		}
	}
	return false
}
