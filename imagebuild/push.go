package imagebuild

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PushRef is where an image named ref (registry/name:tag, as an archive carries it) goes in the
// repository prefix repo ("registry.example:5000/team"): repo/name:tag.
func PushRef(repo, ref string) (name.Reference, error) {
	slash := strings.LastIndex(ref, "/")
	if slash < 0 {
		return nil, fmt.Errorf("push: image name %q has no repository", ref)
	}
	r, err := name.ParseReference(strings.TrimSuffix(repo, "/")+"/"+ref[slash+1:], name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("push: parse reference: %w", err)
	}
	return r, nil
}

// Push uploads the index of an archive written by Build, with every image and layer, under repo;
// registries on loopback are spoken to over plain HTTP. Credentials come from the docker config
// (~/.docker/config.json) and its helpers, as docker login leaves them.
func Push(ctx context.Context, archive, repo string, opts ...remote.Option) (name.Reference, v1.Hash, error) {
	a, err := OpenArchive(archive)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	defer a.Close()
	ref, err := PushRef(repo, a.Ref)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	d, err := a.Index.Digest()
	if err != nil {
		return nil, v1.Hash{}, err
	}
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.WriteIndex(ref, a.Index, opts...); err != nil {
		return nil, v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return ref, d, nil
}
