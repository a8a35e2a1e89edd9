package segment

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Codec is the compression codec of a batch: the low three bits of its attributes.
type Codec int8

// The codecs Kafka defines, with their attribute values.
const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2
	CodecLZ4    Codec = 3
	CodecZstd   Codec = 4
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLZ4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", int8(c))
}

// ParseCodec turns a codec name ("none", "gzip", "snappy", "lz4", "zstd") into a Codec.
func ParseCodec(name string) (Codec, error) {
	for c := CodecNone; c <= CodecZstd; c++ {
		if c.String() == name {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown codec %q (want none, gzip, snappy, lz4 or zstd)", name)
}

// xerialHeader starts a snappy stream in the framing of the xerial snappy-java library, which Java
// Kafka clients write; librdkafka and franz-go write a raw snappy block instead.
var xerialHeader = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// IsXerialSnappy reports whether compressed snappy bytes use xerial's framing rather than a raw block.
func IsXerialSnappy(b []byte) bool { return len(b) >= 16 && bytes.Equal(b[:8], xerialHeader) }

// maxDecompressed bounds what one batch may decompress to, so a crafted batch cannot make a
// reader allocate without limit. Kafka's own limit on a batch is far below this.
const maxDecompressed = 256 << 20

// Decompressor decompresses batch payloads, keeping its decoders and buffers between calls so the
// read path allocates nothing per batch once warm. It is not safe for concurrent use.
type Decompressor struct {
	gz   *gzip.Reader
	lz   *lz4.Reader
	zstd *zstd.Decoder
	src  bytes.Reader
	fix  []byte // copy of an lz4 frame whose header checksum is rewritten
}

// Decompress appends the decompression of src under codec c to dst[:0] and returns it. legacyMagic0
// selects the lz4 header-checksum quirk of Kafka's magic-0 messages.
func (d *Decompressor) Decompress(c Codec, dst, src []byte, legacyMagic0 bool) ([]byte, error) {
	dst = dst[:0]
	switch c {
	case CodecNone:
		return append(dst, src...), nil
	case CodecSnappy:
		if IsXerialSnappy(src) {
			return decodeXerial(dst, src)
		}
		return decodeSnappyBlock(dst, src)
	case CodecGzip:
		d.src.Reset(src)
		if d.gz == nil {
			gz, err := gzip.NewReader(&d.src)
			if err != nil {
				return dst, fmt.Errorf("gzip: %w", err)
			}
			d.gz = gz
		} else if err := d.gz.Reset(&d.src); err != nil {
			return dst, fmt.Errorf("gzip: %w", err)
		}
		return readAllBounded(dst, d.gz, "gzip")
	case CodecLZ4:
		if legacyMagic0 {
			src = d.fixLZ4HeaderChecksum(src)
		}
		d.src.Reset(src)
		if d.lz == nil {
			d.lz = lz4.NewReader(&d.src)
		} else {
			d.lz.Reset(&d.src)
		}
		return readAllBounded(dst, d.lz, "lz4")
	case CodecZstd:
		if d.zstd == nil {
			z, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxDecompressed))
			if err != nil {
				return dst, fmt.Errorf("zstd: %w", err)
			}
			d.zstd = z
		}
		// DecodeAll allocates a frame's declared content size up front; zstd's best is a 4-byte
		// RLE block for 128 KiB, so a larger claim is a lie not worth allocating for.
		var zh zstd.Header
		if zh.Decode(src) == nil && zh.HasFCS && zh.FrameContentSize > 32<<10*uint64(len(src)) {
			return dst, fmt.Errorf("zstd: frame of %d bytes claims to decompress to %d", len(src), zh.FrameContentSize)
		}
		out, err := d.zstd.DecodeAll(src, dst)
		if err != nil {
			return dst, fmt.Errorf("zstd: %w", err)
		}
		return out, nil
	}
	return dst, fmt.Errorf("unknown codec %d", int8(c))
}

func readAllBounded(dst []byte, r io.Reader, name string) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			if len(dst) >= maxDecompressed {
				return dst, fmt.Errorf("%s: decompresses to more than %d bytes", name, maxDecompressed)
			}
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, fmt.Errorf("%s: %w", name, err)
		}
	}
}

func decodeSnappyBlock(dst, src []byte) ([]byte, error) {
	n, err := snappy.DecodedLen(src)
	if err != nil {
		return dst, fmt.Errorf("snappy: %w", err)
	}
	if n > maxDecompressed-len(dst) {
		return dst, fmt.Errorf("snappy: block decompresses to %d bytes, more than the limit", n)
	}
	if n > 32*len(src) { // snappy's best is 64 bytes from a 3-byte copy: don't allocate for a lie
		return dst, fmt.Errorf("snappy: block of %d bytes claims to decompress to %d", len(src), n)
	}
	start := len(dst)
	dst = grow(dst, n)
	if _, err := snappy.Decode(dst[start:start+n], src); err != nil {
		return dst[:start], fmt.Errorf("snappy: %w", err)
	}
	return dst, nil
}

// decodeXerial reads xerial framing: the 8-byte magic, two int32 versions, then chunks each
// prefixed by a big-endian int32 length and holding one raw snappy block.
func decodeXerial(dst, src []byte) ([]byte, error) {
	p := 16
	for p < len(src) {
		if len(src)-p < 4 {
			return dst, fmt.Errorf("snappy: xerial chunk length cut short at byte %d", p)
		}
		n := int(int32(binary.BigEndian.Uint32(src[p:])))
		p += 4
		if n < 0 || n > len(src)-p {
			return dst, fmt.Errorf("snappy: xerial chunk at byte %d claims %d bytes, %d remain", p-4, n, len(src)-p)
		}
		var err error
		if dst, err = decodeSnappyBlock(dst, src[p:p+n]); err != nil {
			return dst, err
		}
		p += n
	}
	return dst, nil
}

// EncodeXerialSnappy appends src to dst in xerial's snappy framing with chunks of at most
// blockSize bytes, as Java clients write it.
func EncodeXerialSnappy(dst, src []byte, blockSize int) []byte {
	dst = append(dst, xerialHeader...)
	dst = binary.BigEndian.AppendUint32(dst, 1) // version
	dst = binary.BigEndian.AppendUint32(dst, 1) // minimum compatible version
	for len(src) > 0 {
		chunk := src[:min(blockSize, len(src))]
		src = src[len(chunk):]
		lenAt := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		start := len(dst)
		dst = grow(dst, snappy.MaxEncodedLen(len(chunk)))
		enc := snappy.Encode(dst[start:cap(dst)], chunk)
		dst = dst[:start+len(enc)]
		binary.BigEndian.PutUint32(dst[lenAt:], uint32(len(enc)))
	}
	return dst
}

// fixLZ4HeaderChecksum undoes KAFKA-3160: Kafka's magic-0 lz4 writer computed the frame
// descriptor checksum over the magic number as well. Kafka ignores that checksum for magic 0, so
// we recompute it over the descriptor alone before handing the frame to the decoder.
func (d *Decompressor) fixLZ4HeaderChecksum(src []byte) []byte {
	const magic = 0x184D2204
	if len(src) < 7 || binary.LittleEndian.Uint32(src) != magic {
		return src
	}
	flg := src[4]
	descLen := 2 // FLG, BD
	if flg&0x08 != 0 {
		descLen += 8 // content size
	}
	if flg&0x01 != 0 {
		descLen += 4 // dictionary id
	}
	hcAt := 4 + descLen
	if len(src) <= hcAt {
		return src
	}
	want := byte(xxhash32(src[4:hcAt]) >> 8)
	if src[hcAt] == want {
		return src
	}
	d.fix = append(d.fix[:0], src...)
	d.fix[hcAt] = want
	return d.fix
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n+len(b)/4)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// Compressor compresses batch payloads, keeping its encoders between calls. It is not safe for
// concurrent use.
type Compressor struct {
	gz   *gzip.Writer
	lz   *lz4.Writer
	zstd *zstd.Encoder
	buf  bytes.Buffer
}

// Compress appends the compression of src under codec c to dst and returns it. Snappy is written
// as a raw block, as franz-go and librdkafka write it; every Kafka client reads that.
func (cp *Compressor) Compress(c Codec, dst, src []byte) ([]byte, error) {
	switch c {
	case CodecNone:
		return append(dst, src...), nil
	case CodecSnappy:
		start := len(dst)
		dst = grow(dst, snappy.MaxEncodedLen(len(src)))
		enc := snappy.Encode(dst[start:cap(dst)], src)
		return dst[:start+len(enc)], nil
	case CodecGzip:
		cp.buf.Reset()
		if cp.gz == nil {
			cp.gz = gzip.NewWriter(&cp.buf)
		} else {
			cp.gz.Reset(&cp.buf)
		}
		if _, err := cp.gz.Write(src); err != nil {
			return dst, err
		}
		if err := cp.gz.Close(); err != nil {
			return dst, err
		}
		return append(dst, cp.buf.Bytes()...), nil
	case CodecLZ4:
		cp.buf.Reset()
		if cp.lz == nil {
			cp.lz = lz4.NewWriter(&cp.buf)
			if err := cp.lz.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.ConcurrencyOption(1)); err != nil {
				return dst, err
			}
		} else {
			cp.lz.Reset(&cp.buf)
		}
		if _, err := cp.lz.Write(src); err != nil {
			return dst, err
		}
		if err := cp.lz.Close(); err != nil {
			return dst, err
		}
		return append(dst, cp.buf.Bytes()...), nil
	case CodecZstd:
		if cp.zstd == nil {
			z, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
			if err != nil {
				return dst, err
			}
			cp.zstd = z
		}
		return cp.zstd.EncodeAll(src, dst), nil
	}
	return dst, fmt.Errorf("unknown codec %d", int8(c))
}

// xxhash32 is the 32-bit xxHash with seed 0 that lz4 frames use for their header checksum; the lz4
// library keeps its own in an internal package.
func xxhash32(b []byte) uint32 {
	const (
		p1 = 2654435761
		p2 = 2246822519
		p3 = 3266489917
		p4 = 668265263
		p5 = 374761393
	)
	n := len(b)
	var h uint32
	if n >= 16 {
		prime1, prime2 := uint32(p1), uint32(p2)
		v1, v2, v3, v4 := prime1+prime2, prime2, uint32(0), 0-prime1
		for len(b) >= 16 {
			v1 = rotl32(v1+binary.LittleEndian.Uint32(b)*p2, 13) * p1
			v2 = rotl32(v2+binary.LittleEndian.Uint32(b[4:])*p2, 13) * p1
			v3 = rotl32(v3+binary.LittleEndian.Uint32(b[8:])*p2, 13) * p1
			v4 = rotl32(v4+binary.LittleEndian.Uint32(b[12:])*p2, 13) * p1
			b = b[16:]
		}
		h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18)
	} else {
		h = p5
	}
	h += uint32(n)
	for len(b) >= 4 {
		h = rotl32(h+binary.LittleEndian.Uint32(b)*p3, 17) * p4
		b = b[4:]
	}
	for _, c := range b {
		h = rotl32(h+uint32(c)*p5, 11) * p1
	}
	h ^= h >> 15
	h *= p2
	h ^= h >> 13
	h *= p3
	h ^= h >> 16
	return h
}

func rotl32(x uint32, r uint) uint32 { return x<<r | x>>(32-r) }
