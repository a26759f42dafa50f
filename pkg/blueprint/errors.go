package blueprint

import (
	"errors"
	"fmt"
	"strings"
)

// The kinds of error this package returns; test with errors.Is. Each maps
// to a Weldr error id (see ErrorID); a route may use another id where the
// API says so (delete and tag of an unknown blueprint answer
// BlueprintsError).
var (
	// ErrInvalid: the blueprint cannot be parsed or breaks a rule.
	ErrInvalid = errors.New("invalid blueprint")
	// ErrInvalidName: a blueprint name that is not a safe file name.
	ErrInvalidName = errors.New("invalid blueprint name")
	// ErrUnknownBlueprint: no such blueprint (committed or in the workspace).
	ErrUnknownBlueprint = errors.New("unknown blueprint")
	// ErrUnknownCommit: no such change of that blueprint.
	ErrUnknownCommit = errors.New("unknown commit")
)

// ErrorID is the Weldr API error id for an error from this package.
func ErrorID(err error) string {
	switch {
	case errors.Is(err, ErrInvalidName):
		return "InvalidChars"
	case errors.Is(err, ErrUnknownBlueprint):
		return "UnknownBlueprint"
	case errors.Is(err, ErrUnknownCommit):
		return "UnknownCommit"
	default:
		return "BlueprintsError"
	}
}

// Error is a problem with one blueprint: its kind, the key it concerns (a
// dotted path such as "customizations.user[1].uid") and, when the blueprint
// came from TOML or JSON text, the line of that key.
type Error struct {
	Kind error
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Kind }

func invalid(key, format string, args ...any) *Error {
	return &Error{Kind: ErrInvalid, Key: key, Msg: fmt.Sprintf(format, args...)}
}
