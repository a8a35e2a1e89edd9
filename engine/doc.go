// Package engine is the embedded storage engine: a partitioned log in Kafka's directory layout, and
// the one Source abstraction that indexing and replay read through, whoever holds the log.
package engine
