package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/replay/replay/segment"
	"github.com/spf13/cobra"
)

func newSegmentCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "segment",
		Short: "Inspect Kafka log segment files",
	}
	cmd.AddCommand(newSegmentDumpCommand())
	return cmd
}

func newSegmentDumpCommand() *cobra.Command {
	var records, asJSON bool
	cmd := &cobra.Command{
		Use:   "dump PATH",
		Short: "Print the batches (and records) of a .log file or of a partition directory",
		Long: `Print the record batches of a Kafka .log segment file, or of every segment of a partition
directory in offset order, like Kafka's kafka-dump-log.sh: a line per batch with its base and
last offset, record count, codec, timestamp type, max timestamp, byte position, size and whether
its CRC is valid. Reads magic 2 record batches and magic 0/1 message sets, with any codec.

--records adds a line per record. --json prints one JSON object per data record and nothing else
on stdout: {"offset":N,"timestamp":MS,"key":STRING|null,"value":STRING|null,"headers":{...}}.
Control batches (transaction markers) are listed but their records are not data.

A corrupt or torn file prints what could be read, then an error naming the file and byte
position on stderr, and exits with status 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := segmentLogFiles(args[0])
			if err != nil {
				return err
			}
			out := bufio.NewWriterSize(cmd.OutOrStdout(), 1<<16)
			d := dumper{out: out, records: records, json: asJSON}
			var firstErr error
			for _, f := range files {
				if err := d.dumpFile(f); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "replayd: segment dump:", err)
					if firstErr == nil {
						firstErr = err
					}
					if !errors.Is(err, segment.ErrChecksum) {
						break // the rest of the partition cannot be trusted to line up
					}
				}
			}
			if err := out.Flush(); err != nil {
				return err
			}
			if firstErr != nil {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&records, "records", false, "print a line per record")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print only one JSON object per data record")
	return cmd
}

// segmentLogFiles lists the .log files that path names: itself, or a directory's segments in
// base offset order.
func segmentLogFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	type seg struct {
		base int64
		path string
	}
	var segs []seg
	for _, e := range entries {
		if base, ext, ok := segment.ParseFileName(e.Name()); ok && ext == segment.LogExt && !e.IsDir() {
			segs = append(segs, seg{base, filepath.Join(path, e.Name())})
		}
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("%s: no segment files (<20-digit base offset>.log) in this directory", path)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].base < segs[j].base })
	files := make([]string, len(segs))
	for i, s := range segs {
		files[i] = s.path
	}
	return files, nil
}

type dumper struct {
	out     *bufio.Writer
	records bool
	json    bool
	rr      segment.RecordReader
	line    []byte
}

// dumpFile prints one .log file. A batch with a bad CRC is reported and skipped, and the scan goes
// on; a torn or malformed batch ends it. The first problem is returned.
func (d *dumper) dumpFile(path string) error {
	f, err := vfs.Default.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !d.json {
		fmt.Fprintf(d.out, "Dumping %s\n", path)
	}
	var firstErr error
	sc := segment.NewScanner(f, path, st.Size(), segment.ScanOptions{})
	for sc.Next() {
		b := sc.Batch()
		crcErr := b.VerifyCRC()
		var recErr error
		count, base := int64(b.NumRecords), b.BaseOffset
		decodeRecords := crcErr == nil && (d.records || d.json || b.NumRecords < 0)
		if decodeRecords {
			recErr = d.rr.Reset(b)
			if recErr == nil && b.NumRecords < 0 {
				// A compressed legacy wrapper knows its records only once decompressed.
				count = 0
				for d.rr.Next() {
					if count == 0 {
						base = d.rr.Record().Offset
					}
					count++
				}
				if recErr = d.rr.Err(); recErr == nil {
					recErr = d.rr.Reset(b)
				}
			}
		}
		if !d.json {
			d.printBatch(b, base, count, crcErr == nil)
		}
		if decodeRecords && recErr == nil && (d.records || d.json) {
			for d.rr.Next() {
				d.printRecord(b, d.rr.Record())
			}
			recErr = d.rr.Err()
		}
		for _, e := range []error{crcErr, recErr} {
			if e != nil && firstErr == nil {
				firstErr = e
			}
		}
		if recErr != nil && !errors.Is(recErr, segment.ErrChecksum) {
			break
		}
	}
	if err := sc.Err(); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

func (d *dumper) printBatch(b *segment.Batch, base, count int64, crcValid bool) {
	countText := strconv.FormatInt(count, 10)
	if count < 0 {
		countText = "?"
	}
	fmt.Fprintf(d.out, "baseOffset: %d lastOffset: %d count: %s baseSequence: %d lastSequence: %d producerId: %d producerEpoch: %d partitionLeaderEpoch: %d isTransactional: %t isControl: %t position: %d %s: %d size: %d magic: %d compresscodec: %s crc: %d isvalid: %t\n",
		base, b.LastOffset(), countText, b.BaseSequence, lastSequence(b), b.ProducerID, b.ProducerEpoch,
		b.PartitionLeaderEpoch, b.IsTransactional(), b.IsControl(), b.Pos, b.TimestampType(), b.MaxTimestamp,
		b.Size(), b.Magic, b.Codec(), b.CRC, crcValid)
}

func lastSequence(b *segment.Batch) int32 {
	if b.BaseSequence < 0 {
		return -1
	}
	return b.BaseSequence + b.LastOffsetDelta
}

func (d *dumper) printRecord(b *segment.Batch, r *segment.Record) {
	if d.json {
		if b.IsControl() {
			return
		}
		d.line = append(d.line[:0], `{"offset":`...)
		d.line = strconv.AppendInt(d.line, r.Offset, 10)
		d.line = append(d.line, `,"timestamp":`...)
		d.line = strconv.AppendInt(d.line, r.Timestamp, 10)
		d.line = append(d.line, `,"key":`...)
		d.line = appendJSONBytes(d.line, r.Key)
		d.line = append(d.line, `,"value":`...)
		d.line = appendJSONBytes(d.line, r.Value)
		d.line = append(d.line, `,"headers":{`...)
		for i, h := range r.Headers {
			if i > 0 {
				d.line = append(d.line, ',')
			}
			d.line = appendJSONBytes(d.line, h.Key)
			d.line = append(d.line, ':')
			d.line = appendJSONBytes(d.line, h.Value)
		}
		d.line = append(d.line, "}}\n"...)
		d.out.Write(d.line)
		return
	}
	fmt.Fprintf(d.out, "| offset: %d %s: %d keySize: %d valueSize: %d headerKeys: [", r.Offset, b.TimestampType(), r.Timestamp, size(r.Key), size(r.Value))
	for i, h := range r.Headers {
		if i > 0 {
			d.out.WriteByte(',')
		}
		d.out.Write(h.Key)
	}
	d.out.WriteString("]")
	if b.IsControl() {
		if t, err := segment.ParseControlKey(r.Key); err == nil {
			fmt.Fprintf(d.out, " endTxnMarker: %s", t)
		}
	} else {
		fmt.Fprintf(d.out, " key: %s payload: %s", printable(r.Key), printable(r.Value))
	}
	d.out.WriteByte('\n')
}

func size(b []byte) int {
	if b == nil {
		return -1
	}
	return len(b)
}

// printable shows b on one line: as it is when it is UTF-8 text without control characters,
// else Go-quoted so that nothing unprintable reaches the terminal.
func printable(b []byte) string {
	if b == nil {
		return "null"
	}
	if utf8.Valid(b) {
		clean := true
		for _, c := range b {
			if c < 0x20 || c == 0x7f {
				clean = false
				break
			}
		}
		if clean {
			return string(b)
		}
	}
	return strconv.Quote(string(b))
}

// appendJSONBytes writes b as a JSON string, or null. Bytes that are not UTF-8 cannot be a JSON
// string; they are written as \ufffd, as encoding/json does.
func appendJSONBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, "null"...)
	}
	if utf8.Valid(b) && !needsEscape(b) {
		dst = append(dst, '"')
		dst = append(dst, b...)
		return append(dst, '"')
	}
	enc, _ := json.Marshal(string(b))
	return append(dst, enc...)
}

func needsEscape(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			return true
		}
	}
	return false
}
