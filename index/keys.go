package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
)

// Key prefixes. Every key starts with one byte saying what it is, then the partition (uint32 big
// endian), so that one partition's keys of one kind are contiguous and ordered.
const (
	prefixEntry      = 'e' // 'e' | partition | bucket uint32 | webhook uint64 → offset runs
	prefixSummary    = 's' // 's' | partition | bucket uint32 → uvarint largest offset indexed in the bucket
	prefixCheckpoint = 'c' // 'c' | partition → uint64 next offset to index
	prefixFloor      = 'r' // 'r' | partition → uint32 lowest bucket kept by time retention
	prefixLastBatch  = 'l' // 'l' | partition → u64 base offset, u32 CRC of the last batch below the checkpoint
	keyMeta          = "m" // JSON meta: format version, bucket width
)

const (
	entryKeyLen   = 1 + 4 + 4 + 8
	summaryKeyLen = 1 + 4 + 4
	partKeyLen    = 1 + 4
)

// ErrCorrupt is returned (wrapped) when the index holds a key or value it could not have written.
var ErrCorrupt = errors.New("index: corrupt")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// WebhookID maps a record key to the webhook id the index stores: the number itself when the key
// is a decimal uint64 (webhook ids are), else xxhash64 of its bytes. Two keys mapping to one id
// only make a lookup return a superset; replay filters records by their key.
func WebhookID(key []byte) uint64 {
	n := len(key)
	if n == 0 || n > 19 {
		// 20 digits may overflow a uint64: the careful loop checks.
		return webhookIDChecked(key)
	}
	// Up to 19 digits cannot overflow (10^19-1 < 2^64-1), and eight at a time cost about what
	// two did one by one: this runs for every record a build indexes (profiled, 3% of a
	// rebuild's CPU one digit at a time).
	var v uint64
	i := 0
	for ; i+8 <= n; i += 8 {
		x := binary.LittleEndian.Uint64(key[i:])
		if !eightDigits(x) {
			return xxhash.Sum64(key)
		}
		v = v*100_000_000 + parseEightDigits(x)
	}
	for ; i < n; i++ {
		d := key[i] - '0'
		if d > 9 {
			return xxhash.Sum64(key)
		}
		v = v*10 + uint64(d)
	}
	return v
}

// webhookIDChecked is WebhookID one digit at a time, checking for overflow.
func webhookIDChecked(key []byte) uint64 {
	if len(key) == 0 || len(key) > 20 {
		return xxhash.Sum64(key)
	}
	var v uint64
	for _, c := range key {
		if c < '0' || c > '9' {
			return xxhash.Sum64(key)
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return xxhash.Sum64(key) // overflows uint64
		}
		v = v*10 + d
	}
	return v
}

// eightDigits says whether the 8 bytes of x (little endian) are all ASCII digits: each byte's
// high nibble is 3, and adding 6 leaves it 3 (no byte above '9').
func eightDigits(x uint64) bool {
	const hi = 0xF0F0F0F0F0F0F0F0
	return x&hi|((x+0x0606060606060606)&hi)>>4 == 0x3333333333333333
}

// parseEightDigits is the number the 8 ASCII digits of x spell, the first in its lowest byte
// (Lemire's SWAR: pairs, then quadruples, then the whole).
func parseEightDigits(x uint64) uint64 {
	x -= 0x3030303030303030
	x = x*10 + x>>8
	return ((x&0x000000FF000000FF)*(100+1_000_000<<32) + (x>>16&0x000000FF000000FF)*(1+10_000<<32)) >> 32
}

func appendPartKey(dst []byte, prefix byte, p int32) []byte {
	dst = append(dst, prefix)
	return binary.BigEndian.AppendUint32(dst, uint32(p))
}

func entryKey(dst []byte, p int32, bucket uint32, webhook uint64) []byte {
	dst = appendPartKey(dst, prefixEntry, p)
	dst = binary.BigEndian.AppendUint32(dst, bucket)
	return binary.BigEndian.AppendUint64(dst, webhook)
}

func summaryKey(dst []byte, p int32, bucket uint32) []byte {
	dst = appendPartKey(dst, prefixSummary, p)
	return binary.BigEndian.AppendUint32(dst, bucket)
}

// bucketStart is the first key of kind prefix ('e' or 's') of partition p at bucket.
func bucketStart(prefix byte, p int32, bucket uint32) []byte {
	return binary.BigEndian.AppendUint32(appendPartKey(nil, prefix, p), bucket)
}

// partitionEnd is the key after every key of kind prefix of partition p.
func partitionEnd(prefix byte, p int32) []byte {
	if uint32(p) == 1<<32-1 {
		return []byte{prefix + 1}
	}
	return appendPartKey(nil, prefix, p+1)
}

type entryKeyParts struct {
	partition int32
	bucket    uint32
	webhook   uint64
}

func parseEntryKey(k []byte) (entryKeyParts, error) {
	if len(k) != entryKeyLen || k[0] != prefixEntry {
		return entryKeyParts{}, corruptf("entry key %x", k)
	}
	return entryKeyParts{
		partition: int32(binary.BigEndian.Uint32(k[1:])),
		bucket:    binary.BigEndian.Uint32(k[5:]),
		webhook:   binary.BigEndian.Uint64(k[9:]),
	}, nil
}

// appendRun appends a run of ascending offsets: uvarint count, uvarint first offset, uvarint
// deltas. Runs are self-delimiting, so values concatenate.
func appendRun(dst []byte, offsets []int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(offsets)))
	prev := int64(0)
	for i, o := range offsets {
		if i == 0 {
			dst = binary.AppendUvarint(dst, uint64(o))
		} else {
			dst = binary.AppendUvarint(dst, uint64(o-prev))
		}
		prev = o
	}
	return dst
}

// decodeRuns appends the offsets of the concatenated runs in v to dst.
func decodeRuns(dst []int64, v []byte) ([]int64, error) {
	for len(v) > 0 {
		n, k := binary.Uvarint(v)
		if k <= 0 || n == 0 || n > uint64(len(v)) {
			return dst, corruptf("bad run count in value %x", v)
		}
		v = v[k:]
		var prev int64
		for i := uint64(0); i < n; i++ {
			x, k := binary.Uvarint(v)
			if k <= 0 || x > 1<<63-1 {
				return dst, corruptf("bad offset in run")
			}
			v = v[k:]
			if i == 0 {
				prev = int64(x)
			} else {
				if x == 0 || prev+int64(x) < prev {
					return dst, corruptf("offsets not ascending in run")
				}
				prev += int64(x)
			}
			dst = append(dst, prev)
		}
	}
	return dst, nil
}

// merger is the index's Pebble merge operator. Entry values are concatenations of runs: a commit
// merges one more run into a key without reading it. When a merge sees offsets that ascend
// across runs (always, for what the builder writes), it re-encodes them as one run, so
// compactions leave one compact run per key. Summary values keep the largest offset.
var merger = &pebble.Merger{
	Name: "replay.index.v1",
	Merge: func(key, value []byte) (pebble.ValueMerger, error) {
		m := &valueMerger{summary: len(key) > 0 && key[0] == prefixSummary}
		m.newer = append(m.newer, slices.Clone(value))
		return m, nil
	},
}

type valueMerger struct {
	summary bool
	older   [][]byte // in reverse: older[len-1] is the oldest
	newer   [][]byte // oldest first
}

func (m *valueMerger) MergeNewer(v []byte) error {
	m.newer = append(m.newer, slices.Clone(v))
	return nil
}

func (m *valueMerger) MergeOlder(v []byte) error {
	m.older = append(m.older, slices.Clone(v))
	return nil
}

func (m *valueMerger) Finish(bool) ([]byte, io.Closer, error) {
	if len(m.older)+len(m.newer) == 1 {
		// One operand is its own merge: what every read of a compacted key sees (Pebble keeps
		// it a merge operand), which would otherwise decode and re-encode the whole value.
		return slices.Concat(m.older, m.newer)[0], nil, nil
	}
	ops := make([][]byte, 0, len(m.older)+len(m.newer))
	for i := len(m.older) - 1; i >= 0; i-- {
		ops = append(ops, m.older[i])
	}
	ops = append(ops, m.newer...)
	if m.summary {
		var hi uint64
		for _, op := range ops {
			x, k := binary.Uvarint(op)
			if k <= 0 {
				return nil, nil, corruptf("summary value %x", op)
			}
			hi = max(hi, x)
		}
		return binary.AppendUvarint(nil, hi), nil, nil
	}
	var offs []int64
	var cat []byte
	for _, op := range ops {
		var err error
		if offs, err = decodeRuns(offs, op); err != nil {
			return nil, nil, err
		}
		cat = append(cat, op...)
	}
	for i := 1; i < len(offs); i++ {
		if offs[i] <= offs[i-1] {
			return cat, nil, nil // not one ascending run: keep the runs as they are
		}
	}
	return appendRun(nil, offs), nil, nil
}
