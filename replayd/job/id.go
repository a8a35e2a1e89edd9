package job

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// idEpoch is the start of job ids' clock: 2024-01-01T00:00:00Z, in Unix ms.
const idEpoch = 1_704_067_200_000

// IDRandomBits is how many low bits of a job id are random.
const IDRandomBits = 22

// NewID is a new job id, Snowflake-style: the milliseconds since 2024 in the high bits and 22
// random bits below. Ids grow with time, so lists sorted by id are newest first, but they say
// nothing of how many jobs anyone made (a global counter would tell every app the whole
// service's rate). Two jobs created in the same millisecond share an id once in four million:
// drivers make another on a duplicate. The ids stay below 2^63 until the year 2090.
//
// Within a process ids also increase when made in the same millisecond: the next is then the
// last plus a random step of up to 2^16, so that lists (newest first) keep creation order.
func NewID(now time.Time) int64 {
	ms := max(now.UnixMilli()-idEpoch, 0)
	id := ms<<IDRandomBits | int64(random32()&(1<<IDRandomBits-1))
	for {
		last := lastID.Load()
		next := id
		if next <= last {
			next = last + 1 + int64(random32()&(1<<16-1))
		}
		if lastID.CompareAndSwap(last, next) {
			return next
		}
	}
}

// lastID is the last id NewID made in this process.
var lastID atomic.Int64

func random32() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// IDTime is the creation time an id made by NewID carries (to the millisecond).
func IDTime(id int64) time.Time { return time.UnixMilli(id>>IDRandomBits + idEpoch).UTC() }
