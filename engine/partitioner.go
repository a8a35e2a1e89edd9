package engine

// PartitionFor is Kafka's default partitioner for a keyed record, as Java's client computes it:
// toPositive(murmur2(key)) % partitions. The replay service finds a webhook's partition by
// computing it, so this must agree with every producer of delivery_log.
func PartitionFor(key []byte, partitions int32) int32 {
	return int32(uint32(murmur2(key))&0x7fffffff) % partitions
}

// murmur2 is Kafka's Utils.murmur2: MurmurHash2, 32-bit, seed 0x9747b28c, tail bytes taken as
// Java does.
func murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := n &^ 3
	switch n % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}
