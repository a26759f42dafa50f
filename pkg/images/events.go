package images

import "github.com/cosa-build/cosa/pkg/events"

// emit reports e to the engine's sink, if it has one. The engine's events
// are pipeline-start, stage-start, stage-finish, stage-cached,
// stage-failed and info (pkg/events, docs/events.md).
func (en *Engine) emit(e events.Event) { events.Emit(en.Events, e) }
