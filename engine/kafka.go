package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/replay/replay/segment"
)

// KafkaOptions configure a KafkaSource. The zero value of every field but Brokers means its
// default; EnsureDefaults fills them in and Validate checks the result.
type KafkaOptions struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Topic is the topic read. Default "delivery_log".
	Topic string
	// ClientID is the client id the brokers see in their logs and quotas. Default "replayd".
	ClientID string
	// FetchMaxBytes is how many bytes one Fetch asks for when scanning. A broker always returns
	// at least the first whole batch, however large. Default 4 MiB.
	FetchMaxBytes int32
	// TargetedFetchBytes is how many bytes a ReadBatches fetch asks for first, and at least. The
	// broker returns the whole batch holding the offset however small this is; batches after it
	// that fit serve the next offsets without another round trip, but cost bytes when the offsets
	// are sparse. Default 1: one batch; from there the size follows how many of the batches
	// fetched were wanted (nextFetchBytes), up to FetchMaxBytes.
	TargetedFetchBytes int32
	// RequestTimeout is how long a request may take beyond any wait it asks the broker for
	// (kgo.RequestTimeoutOverhead). Default 10s.
	RequestTimeout time.Duration
	// PollWait is how long one long-polling Fetch of WaitForEnd waits on the broker for new
	// records before it asks again. Default 1s.
	PollWait time.Duration
	// Retries is how many times a request that failed with a retryable error (a network error, a
	// retriable Kafka error code such as NOT_LEADER_OR_FOLLOWER) is tried again before the error
	// is returned. Default 5; -1 means none.
	Retries int
	// RetryBackoff is the wait before the first retry; it doubles on each retry up to 2s.
	// Default 100ms.
	RetryBackoff time.Duration
	// ClientOpts are extra franz-go options, applied after the ones the fields above imply (so
	// they override them): TLS, SASL, a dialer, a logger.
	ClientOpts []kgo.Opt
}

// Defaults of KafkaOptions.
const (
	DefaultKafkaTopic          = "delivery_log"
	DefaultKafkaClientID       = "replayd"
	DefaultKafkaFetchMaxBytes  = 4 << 20
	DefaultKafkaRequestTimeout = 10 * time.Second
	DefaultKafkaPollWait       = time.Second
	DefaultKafkaRetries        = 5
	DefaultKafkaRetryBackoff   = 100 * time.Millisecond

	maxKafkaRetryBackoff = 2 * time.Second
	maxKafkaFetchBytes   = segment.MaxBatchSize + segment.BatchHeaderSize
)

// EnsureDefaults replaces the zero values of o with their defaults.
func (o *KafkaOptions) EnsureDefaults() {
	if o.Topic == "" {
		o.Topic = DefaultKafkaTopic
	}
	if o.ClientID == "" {
		o.ClientID = DefaultKafkaClientID
	}
	if o.FetchMaxBytes == 0 {
		o.FetchMaxBytes = DefaultKafkaFetchMaxBytes
	}
	if o.TargetedFetchBytes == 0 {
		o.TargetedFetchBytes = 1
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultKafkaRequestTimeout
	}
	if o.PollWait == 0 {
		o.PollWait = DefaultKafkaPollWait
	}
	if o.Retries == 0 {
		o.Retries = DefaultKafkaRetries
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = DefaultKafkaRetryBackoff
	}
}

// Validate reports every problem with o at once.
func (o *KafkaOptions) Validate() error {
	var errs []error
	if len(o.Brokers) == 0 {
		errs = append(errs, errors.New("kafka: no brokers given"))
	}
	for i, b := range o.Brokers {
		if strings.TrimSpace(b) == "" {
			errs = append(errs, fmt.Errorf("kafka: broker %d is empty", i))
		}
	}
	if err := validTopic(o.Topic); err != nil {
		errs = append(errs, err)
	}
	if o.ClientID == "" {
		errs = append(errs, errors.New("kafka: empty client id"))
	}
	if o.FetchMaxBytes <= 0 || o.FetchMaxBytes > maxKafkaFetchBytes {
		errs = append(errs, fmt.Errorf("kafka: fetch max bytes %d is outside [1, %d]", o.FetchMaxBytes, maxKafkaFetchBytes))
	}
	if o.TargetedFetchBytes <= 0 || o.TargetedFetchBytes > maxKafkaFetchBytes {
		errs = append(errs, fmt.Errorf("kafka: targeted fetch bytes %d is outside [1, %d]", o.TargetedFetchBytes, maxKafkaFetchBytes))
	}
	if o.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("kafka: request timeout %v is not positive", o.RequestTimeout))
	}
	if o.PollWait <= 0 || o.PollWait > time.Duration(1<<31-1)*time.Millisecond {
		errs = append(errs, fmt.Errorf("kafka: poll wait %v is not a positive int32 of milliseconds", o.PollWait))
	}
	if o.Retries < 0 {
		errs = append(errs, fmt.Errorf("kafka: negative retries %d", o.Retries))
	}
	if o.RetryBackoff <= 0 {
		errs = append(errs, fmt.Errorf("kafka: retry backoff %v is not positive", o.RetryBackoff))
	}
	return errors.Join(errs...)
}

func validTopic(t string) error {
	if t == "" || t == "." || t == ".." || len(t) > 249 {
		return fmt.Errorf("kafka: invalid topic name %q", t)
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("kafka: invalid topic name %q: %q is not one of [a-zA-Z0-9._-]", t, c)
		}
	}
	return nil
}

// KafkaError is a failure talking to the cluster: a request that did not get an answer, or an
// answer that carries a Kafka error code (then Err is the *kerr.Error, matchable with errors.Is).
// IsRetryable is true for it when trying again may succeed: a network error, or a code Kafka
// marks retriable.
type KafkaError struct {
	Op        string // what was asked, e.g. `fetch delivery_log-3 at offset 42`
	Brokers   []string
	Err       error
	retryable bool
	refresh   bool // the partition's leader may have moved: reload metadata before retrying
}

func (e *KafkaError) Error() string {
	return fmt.Sprintf("engine: kafka %s (brokers %s): %v", e.Op, strings.Join(e.Brokers, ","), e.Err)
}

func (e *KafkaError) Unwrap() error { return e.Err }

// Retryable says whether trying again may succeed; IsRetryable asks it.
func (e *KafkaError) Retryable() bool { return e.retryable }

// KafkaSource is a Source over a Kafka cluster, read through franz-go without a consumer group:
// raw Fetch requests to each partition's leader, whose record batches reach callbacks exactly as
// the broker stores them. It is safe for concurrent use.
type KafkaSource struct {
	o    KafkaOptions
	cl   *kgo.Client
	adm  *kadm.Client // ListOffsets
	opts []kgo.Opt
	// tails are the clients of WaitForEnd, one per partition. A broker answers the requests of
	// a connection in order, so a long-polling fetch would hold up every read queued behind it
	// on a shared connection (seconds, for a replay's targeted reads): tailing gets its own.
	tailsMu sync.Mutex
	tails   map[int32]*kgo.Client
	ctx     context.Context // canceled by Close, ending calls in flight
	cancel  context.CancelFunc

	closed    atomic.Bool
	closeOnce sync.Once
	meta      atomic.Pointer[kafkaMeta]
}

// kafkaMeta is what the source knows of the topic from its last metadata answer.
type kafkaMeta struct {
	topicID [16]byte
	leaders []int32 // by partition; -1 when the partition has no leader
}

var _ Source = (*KafkaSource)(nil)

// NewKafkaSource connects to the cluster and checks that the topic exists.
func NewKafkaSource(ctx context.Context, o KafkaOptions) (*KafkaSource, error) {
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ClientID(o.ClientID),
		kgo.RequestTimeoutOverhead(o.RequestTimeout),
	}
	opts = append(opts, o.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("engine: kafka client for brokers %s: %w", strings.Join(o.Brokers, ","), err)
	}
	s := &KafkaSource{o: o, cl: cl, adm: kadm.NewClient(cl), opts: opts, tails: map[int32]*kgo.Client{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.retry(ctx, func() error { return s.probe(ctx) }); err != nil {
		s.Close()
		return nil, err
	}
	if _, err := s.refreshMeta(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Topic is the name of the topic read.
func (s *KafkaSource) Topic() string { return s.o.Topic }

// Close releases the client. Calls in flight end with ErrClosed. It is idempotent.
func (s *KafkaSource) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.cancel()
		s.cl.Close()
		s.tailsMu.Lock()
		for _, c := range s.tails {
			c.Close()
		}
		s.tailsMu.Unlock()
	})
	return nil
}

// begin starts a call: it refuses one on a closed source, and derives a context that Close
// cancels. end maps what a Close did to the call into ErrClosed.
func (s *KafkaSource) begin(ctx context.Context) (context.Context, func(), error) {
	if s.closed.Load() {
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { cancel(ErrClosed) })
	return ctx, func() { stop(); cancel(nil) }, nil
}

func (s *KafkaSource) end(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(context.Cause(ctx), ErrClosed) || errors.Is(err, kgo.ErrClientClosed) {
		return ErrClosed
	}
	return err
}

func (s *KafkaSource) kafkaErr(op string, err error) *KafkaError {
	ke := &KafkaError{Op: op, Brokers: s.o.Brokers, Err: err}
	var code *kerr.Error
	switch {
	case errors.As(err, &code):
		ke.retryable = kerr.IsRetriable(err)
		switch code {
		case kerr.NotLeaderForPartition, kerr.LeaderNotAvailable, kerr.FencedLeaderEpoch,
			kerr.UnknownLeaderEpoch, kerr.UnknownTopicOrPartition, kerr.UnknownTopicID,
			kerr.InconsistentTopicID, kerr.ReplicaNotAvailable, kerr.KafkaStorageError,
			kerr.NotCoordinator, kerr.OffsetNotAvailable:
			ke.refresh = true
		}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, kgo.ErrClientClosed):
	default:
		// No answer: the connection failed, timed out, or the broker is not known (any more).
		ke.retryable, ke.refresh = true, true
	}
	return ke
}

// retry runs fn until it succeeds, fails with an error that is not retryable, or has been retried
// o.Retries times, waiting with a doubling backoff between tries.
func (s *KafkaSource) retry(ctx context.Context, fn func() error) error {
	backoff := s.o.RetryBackoff
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ke *KafkaError
		if !errors.As(err, &ke) || !ke.retryable || attempt >= s.o.Retries {
			return err
		}
		if ke.refresh {
			s.refreshMeta(ctx) // best effort: the next try reports what still fails
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, maxKafkaRetryBackoff)
	}
}

// probe asks each seed broker for its API versions, one request each and no retries, and
// succeeds when one answers; otherwise the error names every broker with what its dial or
// request failed with. It makes a cluster that is down fail the open within a few retries,
// where the client's own retries would keep trying until the caller's deadline.
func (s *KafkaSource) probe(ctx context.Context) error {
	seeds := s.cl.SeedBrokers()
	errs := make([]string, len(seeds))
	pctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
	defer cancel()
	answered := make(chan struct{}, len(seeds))
	var wg sync.WaitGroup
	for i, b := range seeds { // all at once: an address that drops packets costs a timeout, not one each
		wg.Go(func() {
			req := kmsg.NewPtrApiVersionsRequest()
			req.ClientSoftwareName = "replayd"
			req.ClientSoftwareVersion = "1"
			if _, err := b.Request(pctx, req); err != nil {
				addr := fmt.Sprint("seed ", i)
				if i < len(s.o.Brokers) { // kgo keeps the seeds in the order given
					addr = s.o.Brokers[i]
				}
				errs[i] = fmt.Sprintf("%s: %v", addr, err)
				return
			}
			answered <- struct{}{}
		})
	}
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	select {
	case <-answered:
		return nil // the others end with pctx
	case <-all:
	}
	select {
	case <-answered:
		return nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ke := s.kafkaErr("connect", errors.New("no seed broker answered: "+strings.Join(errs, "; ")))
	ke.refresh = false
	return ke
}

// refreshMeta asks the cluster for the topic's partitions and leaders.
func (s *KafkaSource) refreshMeta(ctx context.Context) (*kafkaMeta, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(s.o.Topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = false
	op := "metadata of topic " + s.o.Topic
	kresp, err := s.cl.Request(ctx, req)
	if err != nil {
		return nil, s.kafkaErr(op, err)
	}
	resp := kresp.(*kmsg.MetadataResponse)
	if len(resp.Topics) != 1 {
		return nil, s.kafkaErr(op, fmt.Errorf("answer holds %d topics", len(resp.Topics)))
	}
	t := &resp.Topics[0]
	if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, &KafkaError{Op: op, Brokers: s.o.Brokers, Err: fmt.Errorf("topic %q does not exist: %w", s.o.Topic, err)}
		}
		return nil, s.kafkaErr(op, err)
	}
	m := &kafkaMeta{topicID: t.TopicID, leaders: make([]int32, len(t.Partitions))}
	for i := range m.leaders {
		m.leaders[i] = -1
	}
	for _, p := range t.Partitions {
		if p.Partition < 0 || int(p.Partition) >= len(m.leaders) {
			return nil, s.kafkaErr(op, fmt.Errorf("partition %d in an answer of %d partitions", p.Partition, len(t.Partitions)))
		}
		if p.ErrorCode == 0 || errors.Is(kerr.ErrorForCode(p.ErrorCode), kerr.ReplicaNotAvailable) {
			m.leaders[p.Partition] = p.Leader
		}
	}
	s.meta.Store(m)
	return m, nil
}

// partition checks that p exists, reloading metadata once if it is past the known count.
func (s *KafkaSource) partition(ctx context.Context, p int32) (*kafkaMeta, error) {
	m := s.meta.Load()
	if p >= 0 && int(p) < len(m.leaders) {
		return m, nil
	}
	if p >= 0 {
		var err error
		if m, err = s.refreshMeta(ctx); err != nil {
			return nil, err
		}
		if int(p) < len(m.leaders) {
			return m, nil
		}
	}
	return nil, fmt.Errorf("%w: %s has no partition %d (it has %d)", ErrUnknownPartition, s.o.Topic, p, len(m.leaders))
}

// Partitions is the topic's partition count, as the cluster answers now.
func (s *KafkaSource) Partitions(ctx context.Context) (n int32, err error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	var m *kafkaMeta
	err = s.retry(ctx, func() (err error) { m, err = s.refreshMeta(ctx); return err })
	if err != nil {
		return 0, s.end(ctx, err)
	}
	return int32(len(m.leaders)), nil
}

// listOffset answers ListOffsets for partition p at ts (or the special -1 latest, -2 earliest)
// through kadm, which sends each partition's request to its leader. For ts ≥ 0, found is false
// when no record's timestamp is at least ts, and the offset is then the end offset (kadm asks
// for it in the same call).
func (s *KafkaSource) listOffset(ctx context.Context, p int32, ts int64) (off int64, found bool, err error) {
	if _, err := s.partition(ctx, p); err != nil {
		return 0, false, err
	}
	op := fmt.Sprintf("list offsets of %s-%d at timestamp %d", s.o.Topic, p, ts)
	err = s.retry(ctx, func() error {
		var listed kadm.ListedOffsets
		var err error
		switch ts {
		case -2:
			listed, err = s.adm.ListStartOffsets(ctx, s.o.Topic)
		case -1:
			listed, err = s.adm.ListEndOffsets(ctx, s.o.Topic)
		default:
			listed, err = s.adm.ListOffsetsAfterMilli(ctx, ts, s.o.Topic)
		}
		if err != nil {
			return s.kafkaErr(op, err)
		}
		if e, ok := listed.Lookup(s.o.Topic, -1); ok && e.Err != nil { // the topic is gone
			return s.kafkaErr(op, e.Err)
		}
		o, ok := listed.Lookup(s.o.Topic, p)
		if !ok {
			return s.kafkaErr(op, errors.New("the answer does not hold the partition"))
		}
		if o.Err != nil {
			return s.kafkaErr(op, o.Err)
		}
		off = o.Offset
		// A by-time answer carries the record's timestamp; kadm's fallback to the end offset
		// (no record that late) carries -1.
		found = ts < 0 || o.Timestamp >= 0
		return nil
	})
	return off, found, err
}

func (s *KafkaSource) bounds(ctx context.Context, p int32) (Bounds, error) {
	start, _, err := s.listOffset(ctx, p, -2)
	if err != nil {
		return Bounds{}, err
	}
	end, _, err := s.listOffset(ctx, p, -1)
	if err != nil {
		return Bounds{}, err
	}
	return Bounds{Start: start, End: end}, nil
}

// Bounds are the partition's log start offset and high watermark.
func (s *KafkaSource) Bounds(ctx context.Context, partition int32) (Bounds, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return Bounds{}, err
	}
	defer done()
	b, err := s.bounds(ctx, partition)
	return b, s.end(ctx, err)
}

// OffsetForTime answers ListOffsets by timestamp. A negative ts, which Kafka would read as a
// special value, answers the log start offset.
func (s *KafkaSource) OffsetForTime(ctx context.Context, partition int32, ts int64) (int64, bool, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return 0, false, err
	}
	defer done()
	if ts < 0 {
		b, err := s.bounds(ctx, partition)
		if err != nil {
			return 0, false, s.end(ctx, err)
		}
		return b.Start, b.Start < b.End, nil
	}
	off, found, err := s.listOffset(ctx, partition, ts)
	if err != nil {
		return 0, false, s.end(ctx, err)
	}
	return off, found, nil
}

// fetched is one partition's answer to a Fetch.
type fetched struct {
	raw      []byte // the record batches, the last one possibly cut short
	hwm      int64
	logStart int64
}

// fetch asks p's leader for its batches from offset, retrying what is retryable. maxWait > 0 makes
// it a long poll that the broker answers once it has any new records or maxWait has passed.
// tailClient is the client WaitForEnd long-polls partition p with.
func (s *KafkaSource) tailClient(p int32) (*kgo.Client, error) {
	s.tailsMu.Lock()
	defer s.tailsMu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if c := s.tails[p]; c != nil {
		return c, nil
	}
	c, err := kgo.NewClient(s.opts...)
	if err != nil {
		return nil, err
	}
	s.tails[p] = c
	return c, nil
}

func (s *KafkaSource) fetch(ctx context.Context, p int32, offset int64, maxBytes int32, maxWait time.Duration) (fetched, error) {
	return s.fetchWith(ctx, s.cl, p, offset, maxBytes, maxWait)
}

func (s *KafkaSource) fetchWith(ctx context.Context, cl *kgo.Client, p int32, offset int64, maxBytes int32, maxWait time.Duration) (fetched, error) {
	op := fmt.Sprintf("fetch %s-%d at offset %d", s.o.Topic, p, offset)
	var f fetched
	err := s.retry(ctx, func() error {
		m, err := s.partition(ctx, p)
		if err != nil {
			return err
		}
		leader := m.leaders[p]
		if leader < 0 {
			return s.kafkaErr(op, kerr.LeaderNotAvailable)
		}
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = int32(maxWait / time.Millisecond)
		req.MinBytes = 1
		req.MaxBytes = maxBytes
		req.IsolationLevel = 0 // read uncommitted: every batch, as stored
		req.SessionID = 0
		req.SessionEpoch = -1 // no fetch session: every request is complete in itself
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = s.o.Topic
		rt.TopicID = m.topicID // v13+ name the topic by id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p
		rp.FetchOffset = offset
		rp.CurrentLeaderEpoch = -1
		rp.LastFetchedEpoch = -1
		rp.LogStartOffset = -1
		rp.PartitionMaxBytes = maxBytes
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		kresp, err := cl.Broker(int(leader)).Request(ctx, req)
		if err != nil {
			return s.kafkaErr(fmt.Sprintf("%s from broker %d", op, leader), err)
		}
		resp := kresp.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return s.kafkaErr(op, err)
		}
		for _, t := range resp.Topics {
			if t.Topic != s.o.Topic && t.TopicID != m.topicID {
				continue
			}
			for i := range t.Partitions {
				rp := &t.Partitions[i]
				if rp.Partition != p {
					continue
				}
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					return s.kafkaErr(fmt.Sprintf("%s from broker %d", op, leader), err)
				}
				f = fetched{raw: rp.RecordBatches, hwm: rp.HighWatermark, logStart: rp.LogStartOffset}
				return nil
			}
		}
		return s.kafkaErr(op, errors.New("the answer does not hold the partition"))
	})
	return f, err
}

// eachBatch calls fn for each whole batch of a fetch answer, until fn returns false or an error.
// A partial last batch (the fetch's size cut it) is not corruption: eachBatch reports it with
// truncated and stops there.
func (s *KafkaSource) eachBatch(raw []byte, p int32, offset int64, fn func(*segment.Batch) (bool, error)) (truncated bool, err error) {
	if len(raw) == 0 {
		return false, nil
	}
	name := fmt.Sprintf("kafka %s-%d fetch at offset %d", s.o.Topic, p, offset)
	sc := segment.NewScanner(bytes.NewReader(raw), name, int64(len(raw)), segment.ScanOptions{BufferSize: len(raw)})
	for sc.Next() {
		more, err := fn(sc.Batch())
		if err != nil || !more {
			return false, err
		}
	}
	if err := sc.Err(); err != nil {
		if segment.IsTornTail(err) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}

// fetchWaste is how many bytes of batches nobody wants a targeted fetch may bring along per byte
// of wanted ones: passing over a batch (its header read, nothing decompressed) costs far less
// than a round trip to the broker.
const fetchWaste = 4

// fetchBytesFor sizes a targeted fetch at offsets[0] so that it brings along the wanted batches
// after it, as far as the bytes between them stay within fetchWaste times the wanted ones' and
// within FetchMaxBytes; bytesPerOffset and batchBytes are the log's and a wanted batch's size as
// the last answer showed. Neighbouring wanted batches (a 50% share of the partition) then come
// in one round trip each FetchMaxBytes instead of one each, which was 13 times slower than a
// consumer's scan; sparse ones still come one batch (TargetedFetchBytes) per fetch.
func (s *KafkaSource) fetchBytesFor(offsets []int64, bytesPerOffset float64, batchBytes int) int32 {
	if bytesPerOffset <= 0 || batchBytes <= 0 {
		return s.o.TargetedFetchBytes
	}
	best := 0.0
	for k := 1; k < len(offsets) && k < 4096; k++ {
		span := float64(offsets[k]-offsets[0])*bytesPerOffset + float64(batchBytes)
		if span > float64(s.o.FetchMaxBytes) {
			break
		}
		if span <= float64((k+1)*batchBytes)*(1+fetchWaste) {
			best = span
		}
	}
	if best == 0 {
		return s.o.TargetedFetchBytes
	}
	// A little over the estimate, so that the last wanted batch is not cut off.
	return int32(min(best*1.25, float64(s.o.FetchMaxBytes)))
}

// grow is the next fetch size when a fetch of n bytes returned no whole batch.
func grow(n int32, offset int64, p int32, topic string) (int32, error) {
	if n >= maxKafkaFetchBytes {
		return n, fmt.Errorf("engine: kafka %s-%d: the batch at offset %d is larger than %d bytes: %w",
			topic, p, offset, n, segment.ErrCorrupt)
	}
	return int32(min(int64(n)*2, maxKafkaFetchBytes)), nil
}

// errNoProgress is what a fetch that returned no batch below the high watermark is, after retries.
var errNoProgress = errors.New("the fetch returned no batch below the high watermark")

// Scan calls fn for each batch from the one holding from up to the high watermark as of the call.
func (s *KafkaSource) Scan(ctx context.Context, partition int32, from int64, fn func(*segment.Batch) error) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	err = s.scan(ctx, partition, from, fn)
	if errors.Is(err, ErrStop) {
		return nil
	}
	return s.end(ctx, err)
}

func (s *KafkaSource) scan(ctx context.Context, p int32, from int64, fn func(*segment.Batch) error) error {
	if _, err := s.partition(ctx, p); err != nil {
		return err
	}
	from = max(from, 0)
	end := int64(-1) // the high watermark of the first answer
	maxBytes := s.o.FetchMaxBytes
	empty := 0
	for end < 0 || from < end {
		f, err := s.fetch(ctx, p, from, maxBytes, 0)
		if errors.Is(err, kerr.OffsetOutOfRange) {
			b, berr := s.bounds(ctx, p)
			if berr != nil {
				return berr
			}
			switch {
			case from < b.Start:
				from = b.Start // deleted by retention: start at what is kept
				continue
			case from >= b.End:
				return nil // nothing at or after from
			}
			return err
		}
		if err != nil {
			return err
		}
		if end < 0 {
			end = f.hwm
		}
		if from >= end {
			return nil
		}
		progressed := false
		truncated, err := s.eachBatch(f.raw, p, from, func(b *segment.Batch) (bool, error) {
			if b.LastOffset() < from {
				return true, nil // a fetch may begin with the batch before the one asked for
			}
			if b.BaseOffset >= end {
				from = end // past what the call reads (only after a gap, as compaction leaves)
				return false, nil
			}
			progressed = true
			from = b.NextOffset()
			if err := fn(b); err != nil {
				return false, err
			}
			return from < end, nil
		})
		if err != nil {
			return err
		}
		switch {
		case progressed:
			empty, maxBytes = 0, s.o.FetchMaxBytes
		case truncated:
			if maxBytes, err = grow(maxBytes, from, p, s.o.Topic); err != nil {
				return err
			}
		default:
			if err := s.noProgress(ctx, &empty, p, from, f.hwm); err != nil {
				return err
			}
		}
	}
	return nil
}

// noProgress waits before fetching again after an answer with no batch at or after the offset
// below the high watermark, and gives up after o.Retries such answers.
func (s *KafkaSource) noProgress(ctx context.Context, n *int, p int32, offset, hwm int64) error {
	*n++
	if *n > s.o.Retries {
		return &KafkaError{Op: fmt.Sprintf("fetch %s-%d at offset %d (high watermark %d)", s.o.Topic, p, offset, hwm),
			Brokers: s.o.Brokers, Err: errNoProgress, retryable: true}
	}
	return sleepCtx(ctx, s.o.RetryBackoff)
}

// ReadBatches fetches the batch holding each offset (once per distinct batch), in offset order.
func (s *KafkaSource) ReadBatches(ctx context.Context, partition int32, offsets []int64, fn func(*segment.Batch) error) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	err = s.readBatches(ctx, partition, offsets, fn)
	if errors.Is(err, ErrStop) {
		return nil
	}
	return s.end(ctx, err)
}

func (s *KafkaSource) readBatches(ctx context.Context, p int32, offsets []int64, fn func(*segment.Batch) error) error {
	if _, err := s.partition(ctx, p); err != nil {
		return err
	}
	if len(offsets) == 0 {
		return nil
	}
	// The bounds as of the call come with the first answer (no extra round trip): until then,
	// offsets below 0 are the only ones known to be skipped.
	b, known := Bounds{Start: 0, End: math.MaxInt64}, false
	next := int64(-1) // offsets below it are in a batch already delivered
	i := 0
	// skip moves i past the offsets that need no fetch.
	skip := func() {
		for i < len(offsets) && (offsets[i] < b.Start || offsets[i] < next) {
			i++
		}
		if i < len(offsets) && offsets[i] >= b.End {
			i = len(offsets) // ascending: all the rest are past the end too
		}
	}
	maxBytes := s.o.TargetedFetchBytes
	var bytesPerOffset float64 // of the log here, as the last answer showed
	var batchBytes int         // of a wanted batch, as the last answer showed
	empty := 0
	for skip(); i < len(offsets); skip() {
		target := offsets[i]
		f, err := s.fetch(ctx, p, target, maxBytes, 0)
		if errors.Is(err, kerr.OffsetOutOfRange) {
			// Below the log start (deleted by retention) or past the log's end.
			nb, berr := s.bounds(ctx, p)
			if berr != nil {
				return berr
			}
			b.Start = max(b.Start, nb.Start)
			if !known {
				b.End, known = nb.End, true
			}
			if target < b.Start || target >= b.End {
				continue
			}
			return err
		}
		if err != nil {
			return err
		}
		if !known {
			if f.logStart >= 0 { // v5+
				b.Start = max(b.Start, f.logStart)
			}
			b.End, known = f.hwm, true
			if target >= b.End {
				continue // at or past the end: skip drops it and the rest
			}
		}
		progressed := false
		// What the answer held: its batches' bytes and the offsets they span, and the wanted
		// ones among them: how the next fetch is sized (fetchBytesFor).
		var scanned, used, wanted int
		spanFrom, spanTo := int64(-1), int64(-1)
		truncated, err := s.eachBatch(f.raw, p, target, func(batch *segment.Batch) (bool, error) {
			if spanFrom < 0 {
				spanFrom = batch.BaseOffset
			}
			spanTo = batch.NextOffset()
			scanned += len(batch.Raw)
			if batch.LastOffset() < target {
				return true, nil
			}
			used += len(batch.Raw)
			wanted++
			progressed = true
			next = batch.NextOffset()
			if err := fn(batch); err != nil {
				return false, err
			}
			// Batches after it in the same answer serve the next offsets.
			skip()
			if i == len(offsets) {
				return false, nil
			}
			target = offsets[i]
			return true, nil
		})
		if err != nil {
			return err
		}
		switch {
		case progressed:
			empty = 0
			if spanTo > spanFrom {
				bytesPerOffset = float64(scanned) / float64(spanTo-spanFrom)
			}
			batchBytes = used / wanted
			if i < len(offsets) {
				maxBytes = s.fetchBytesFor(offsets[i:], bytesPerOffset, batchBytes)
			}
		case truncated:
			if maxBytes, err = grow(maxBytes, target, p, s.o.Topic); err != nil {
				return err
			}
		default:
			if err := s.noProgress(ctx, &empty, p, target, f.hwm); err != nil {
				return err
			}
		}
	}
	return nil
}

// WaitForEnd long-polls the partition's leader until its high watermark is above offset.
func (s *KafkaSource) WaitForEnd(ctx context.Context, partition int32, offset int64) (int64, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	end, _, err := s.listOffset(ctx, partition, -1)
	if err != nil {
		return 0, s.end(ctx, err)
	}
	var tail *kgo.Client
	if end <= offset {
		if tail, err = s.tailClient(partition); err != nil {
			return end, s.end(ctx, err)
		}
	}
	for end <= offset {
		// Fetch at the end: the broker holds the request until records arrive or PollWait passes.
		f, err := s.fetchWith(ctx, tail, partition, end, 1, s.o.PollWait)
		switch {
		case errors.Is(err, kerr.OffsetOutOfRange):
			// The log was truncated below what we knew, or we raced a leader change.
			if end, _, err = s.listOffset(ctx, partition, -1); err != nil {
				return end, s.end(ctx, err)
			}
			if err := sleepCtx(ctx, s.o.RetryBackoff); err != nil {
				return end, s.end(ctx, err)
			}
		case err != nil:
			return end, s.end(ctx, err)
		default:
			end = f.hwm
		}
		if err := ctx.Err(); err != nil {
			return end, s.end(ctx, err)
		}
	}
	return end, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
