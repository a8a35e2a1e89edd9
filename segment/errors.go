package segment

import (
	"errors"
	"fmt"
)

// The kinds of corruption a reader distinguishes. Match them with errors.Is on any error this
// package returns; every one of them also matches ErrCorrupt.
var (
	// ErrCorrupt matches every corruption error, whatever its kind.
	ErrCorrupt = errors.New("corrupt")
	// ErrTornTail: the file ends inside a batch (a write that did not finish). Everything before
	// the batch's position is intact, so a log can be truncated there and go on.
	ErrTornTail = errors.New("torn tail")
	// ErrChecksum: a batch's bytes do not match its CRC.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrMalformed: a field holds a value that no writer produces (a negative length, an unknown
	// magic or codec, records that overrun their batch).
	ErrMalformed = errors.New("malformed")
)

// CorruptionError names where corrupt bytes were found: the file (or other source) and the byte
// position of the batch or index entry that is wrong.
type CorruptionError struct {
	File   string // path of the file, or a description of the source of the bytes
	Pos    int64  // byte position in File of the batch (or index entry) found corrupt
	Kind   error  // ErrTornTail, ErrChecksum or ErrMalformed
	Detail string // what exactly was wrong
}

func (e *CorruptionError) Error() string {
	name := e.File
	if name == "" {
		name = "<bytes>"
	}
	return fmt.Sprintf("%s: %v at byte %d: %s", name, e.Kind, e.Pos, e.Detail)
}

// Is makes errors.Is(err, ErrCorrupt) and errors.Is(err, e.Kind) both true.
func (e *CorruptionError) Is(target error) bool {
	return target == ErrCorrupt || target == e.Kind
}

// IsCorruption reports whether err says bytes on disk are corrupt, as opposed to an I/O failure.
func IsCorruption(err error) bool { return errors.Is(err, ErrCorrupt) }

// IsTornTail reports whether err says a file ends inside a batch.
func IsTornTail(err error) bool { return errors.Is(err, ErrTornTail) }

func corruptf(file string, pos int64, kind error, format string, args ...any) error {
	return &CorruptionError{File: file, Pos: pos, Kind: kind, Detail: fmt.Sprintf(format, args...)}
}
