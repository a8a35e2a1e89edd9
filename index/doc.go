// Package index is the Pebble time-and-webhook index: it maps (webhook, time) to the offsets of the
// record batches holding that webhook's events, so a replay reads only the batches it needs.
package index
