package segment

import (
	"encoding/binary"
	"sort"
)

// Kafka's index files. A .index file maps offsets to byte positions of the .log: 8-byte entries
// of relative offset (int32, offset - base) and position (int32). A .timeindex file maps
// timestamps to offsets: 12-byte entries of timestamp (int64) and relative offset (int32), each
// entry's timestamp the largest seen in the segment so far. A broker preallocates both files and
// fills them as it goes, so a live segment's index ends in zeros: readers stop at the last entry
// that is not all zero.
const (
	OffsetIndexEntrySize = 8
	TimeIndexEntrySize   = 12
)

// OffsetIndex is a parsed .index file.
type OffsetIndex struct {
	base    int64
	entries []byte // whole entries only, without the zero tail
}

// ParseOffsetIndex parses the bytes of the .index file named file of the segment whose base
// offset is base. Entries must increase in offset and position; a file whose size is not a
// multiple of the entry size was torn.
func ParseOffsetIndex(file string, base int64, b []byte) (*OffsetIndex, error) {
	n, err := countEntries(file, b, OffsetIndexEntrySize)
	if err != nil {
		return nil, err
	}
	x := &OffsetIndex{base: base, entries: b[:n*OffsetIndexEntrySize]}
	var prevOff, prevPos int64 = -1, -1
	for i := 0; i < n; i++ {
		off, pos := x.Entry(i)
		if off-base < 0 || pos < 0 || off <= prevOff || pos <= prevPos {
			return nil, corruptf(file, int64(i*OffsetIndexEntrySize), ErrMalformed,
				"entry %d (offset %d, position %d) does not follow (offset %d, position %d)", i, off, pos, prevOff, prevPos)
		}
		prevOff, prevPos = off, pos
	}
	return x, nil
}

// Len is the number of entries.
func (x *OffsetIndex) Len() int { return len(x.entries) / OffsetIndexEntrySize }

// Entry returns the i-th entry as an absolute offset and a byte position in the .log.
func (x *OffsetIndex) Entry(i int) (offset, pos int64) {
	e := x.entries[i*OffsetIndexEntrySize:]
	return x.base + int64(int32(binary.BigEndian.Uint32(e))), int64(int32(binary.BigEndian.Uint32(e[4:])))
}

// Lookup returns the last entry whose offset is at most target: the position from which a scan
// finds the batch holding target. With no such entry it returns the segment's start.
func (x *OffsetIndex) Lookup(target int64) (offset, pos int64) {
	i := sort.Search(x.Len(), func(i int) bool { o, _ := x.Entry(i); return o > target }) - 1
	if i < 0 {
		return x.base, 0
	}
	return x.Entry(i)
}

// TimeIndex is a parsed .timeindex file.
type TimeIndex struct {
	base    int64
	entries []byte
}

// ParseTimeIndex parses the bytes of the .timeindex file named file of the segment whose base
// offset is base. Timestamps must increase and offsets must not decrease.
func ParseTimeIndex(file string, base int64, b []byte) (*TimeIndex, error) {
	n, err := countEntries(file, b, TimeIndexEntrySize)
	if err != nil {
		return nil, err
	}
	x := &TimeIndex{base: base, entries: b[:n*TimeIndexEntrySize]}
	var prevTS, prevOff int64 = -1 << 63, -1
	for i := 0; i < n; i++ {
		ts, off := x.Entry(i)
		if off-base < 0 || ts <= prevTS || off < prevOff {
			return nil, corruptf(file, int64(i*TimeIndexEntrySize), ErrMalformed,
				"entry %d (timestamp %d, offset %d) does not follow (timestamp %d, offset %d)", i, ts, off, prevTS, prevOff)
		}
		prevTS, prevOff = ts, off
	}
	return x, nil
}

// Len is the number of entries.
func (x *TimeIndex) Len() int { return len(x.entries) / TimeIndexEntrySize }

// Entry returns the i-th entry: the largest timestamp seen up to the batch ending at offset.
func (x *TimeIndex) Entry(i int) (timestamp, offset int64) {
	e := x.entries[i*TimeIndexEntrySize:]
	return int64(binary.BigEndian.Uint64(e)), x.base + int64(int32(binary.BigEndian.Uint32(e[8:])))
}

// Lookup returns the last entry whose timestamp is at most ts. Every record before that entry's
// batch has a smaller timestamp, so a search for the first record at or after ts can start there.
// With no such entry it returns (-1, base).
func (x *TimeIndex) Lookup(ts int64) (timestamp, offset int64) {
	i := sort.Search(x.Len(), func(i int) bool { t, _ := x.Entry(i); return t > ts }) - 1
	if i < 0 {
		return -1, x.base
	}
	return x.Entry(i)
}

// LastEntry returns the index's last entry, or (-1, base) when it has none.
func (x *TimeIndex) LastEntry() (timestamp, offset int64) {
	if x.Len() == 0 {
		return -1, x.base
	}
	return x.Entry(x.Len() - 1)
}

// countEntries counts the entries of an index file up to and including the last one that is not
// all zero. Bytes past the last whole entry are a torn write unless they are zero.
func countEntries(file string, b []byte, size int) (int, error) {
	whole := len(b) - len(b)%size
	if !allZero(b[whole:]) {
		return 0, corruptf(file, int64(whole), ErrTornTail, "index ends %d bytes into an entry", len(b)-whole)
	}
	n := whole / size
	for n > 0 && allZero(b[(n-1)*size:n*size]) {
		n--
	}
	return n, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func appendOffsetEntry(dst []byte, base, offset, pos int64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(offset-base))
	return binary.BigEndian.AppendUint32(dst, uint32(pos))
}

func appendTimeEntry(dst []byte, base, ts, offset int64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	return binary.BigEndian.AppendUint32(dst, uint32(offset-base))
}
