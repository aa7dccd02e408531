// Package imagebuild makes the project's OCI images without a container engine, the way
// distroless images are made: from static Go binaries and files extracted from pinned Debian
// packages, with github.com/google/go-containerregistry for manifests, indexes and registries.
//
// Data flow, for each image of images/images.yaml (Spec) and each platform:
//
//	debs.lock (Lock) ─► debCache: apt-get download, SHA-256 verified, $IKM_CACHE/debs/<sha256>.deb
//	.deb ─► dpkg-deb --fsys-tarfile ─► addDebTar (debFilter) ─┐
//	go build (CGO_ENABLED=0, -trimpath) ──────────────────────┼─► Tree ─► Tar ─► gzip ─► layer
//	baseTree (users, /tmp, /run owned by the image's user) ───┘
//	layers ─► checkELF (every ELF file loads from the image alone) ─► newImage ─► newIndex
//	index ─► writeArchive: bin/images/<name>.tar, an OCI layout that ctr images import names
//	archive ─► Push: any registry (make push)
//
// Everything after the downloads and go build is a pure function of its inputs: entries are
// sorted, owned by numeric ids, timed at Meta.Created (the commit time), gzip headers carry no name
// or time. The same commit therefore gives the same digests; TestReproducible builds twice.
//
// Caveats: the .debs must still be in the Debian archive to be fetched the first time (bookworm
// keeps only current versions; "ikm-images lock" re-pins them); the gzip stream depends on Go's
// compress/gzip, so a Go release that changes it changes the layer digests (the uncompressed
// diff IDs stay).
package imagebuild
