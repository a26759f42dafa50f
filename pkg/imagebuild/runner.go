package imagebuild

import (
	"context"
	"fmt"

	"github.com/cosa-build/cosa/pkg/composer"
	"github.com/cosa-build/cosa/pkg/events"
)

// Runner runs the compose queue's image builds with Build (it is a
// composer.Runner). Every blueprint's workdir is WorkRoot/<name>.
type Runner struct {
	// WorkRoot is the state dir's workdirs/.
	WorkRoot string
	// Repos, when set, gives the extra apt repositories (the service's
	// user sources with keys) at the start of each job.
	Repos func() ([]Repo, error)
	// Groups, when set, gives the packages of a blueprint's package group
	// (a Debian task) from the service's package index.
	Groups func(ctx context.Context, name string) ([]string, error)
	// Events receives cosa's structured events of every job.
	Events events.Sink
}

var _ composer.Runner = (*Runner)(nil)

// Run makes job's image. The result lists the image first, then meta.json
// and the pipeline manifest (the .json files of the metadata tar).
func (r *Runner) Run(ctx context.Context, job composer.Job) (composer.Result, error) {
	s := Spec{Blueprint: job.Blueprint, Type: job.Type, WorkRoot: r.WorkRoot, OutDir: job.OutputDir,
		Log: job.Log, Events: r.Events}
	if job.Size > 0 {
		s.Size = uint64(job.Size)
	}
	if o := job.OSTree; o != nil {
		s.OSTree = OSTree{Ref: o.Ref, Parent: o.Parent, URL: o.URL}
	}
	if r.Repos != nil {
		repos, err := r.Repos()
		if err != nil {
			return composer.Result{}, err
		}
		s.Repos = repos
	}
	if r.Groups != nil && job.Blueprint != nil && len(job.Blueprint.Groups) > 0 {
		s.Groups = map[string][]string{}
		for _, g := range job.Blueprint.Groups {
			pkgs, err := r.Groups(ctx, g.Name)
			if err != nil {
				return composer.Result{}, fmt.Errorf("blueprint %s: group %s: %w", job.Blueprint.Name, g.Name, err)
			}
			s.Groups[g.Name] = pkgs
		}
	}
	res, err := Build(ctx, s)
	if err != nil {
		return composer.Result{}, err
	}
	out := composer.Result{BuildID: res.BuildID}
	for _, a := range res.Artifacts {
		out.Artifacts = append(out.Artifacts, composer.Artifact{Name: a.Name, Size: a.Size, SHA256: a.Sha256})
	}
	for _, m := range res.Metadata {
		// The queue fills in size and checksum.
		out.Artifacts = append(out.Artifacts, composer.Artifact{Name: m})
	}
	return out, nil
}

// ComposerTypes is the type list for the queue's `compose types`: every
// type of Types, enabled when Buildable.
func ComposerTypes() []composer.ImageType {
	var out []composer.ImageType
	for _, t := range types {
		out = append(out, composer.ImageType{Name: t.Name, Enabled: Buildable(t.Name)})
	}
	return out
}
