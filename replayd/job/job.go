// Package job is the replay job store's contract: the Job record, its states and transitions, the
// narrow Driver interface both stores implement (MySQL and embedded), its errors and retry rules.
package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is the lifecycle state of a replay job.
//
//	OPEN ──lease──> STARTED ──> ONGOING ──> COMPLETED
//	                   │           │
//	                   └───────────┴──────> INCOMPLETE (with a reason)
//	OPEN, STARTED, ONGOING ──cancel──> CANCELED
type State uint8

// The states. The zero value is not a valid state.
const (
	StateOpen State = iota + 1
	StateStarted
	StateOngoing
	StateCompleted
	StateIncomplete
	StateCanceled
)

var stateNames = [...]string{
	StateOpen:       "OPEN",
	StateStarted:    "STARTED",
	StateOngoing:    "ONGOING",
	StateCompleted:  "COMPLETED",
	StateIncomplete: "INCOMPLETE",
	StateCanceled:   "CANCELED",
}

// AllStates lists every valid state in lifecycle order.
var AllStates = []State{StateOpen, StateStarted, StateOngoing, StateCompleted, StateIncomplete, StateCanceled}

// ActiveStates are the states in which a job counts as "in progress" for its webhook: at most one
// job per webhook may be in one of them.
var ActiveStates = []State{StateOpen, StateStarted, StateOngoing}

// String returns the upper-case name stored in the database ("OPEN", …).
func (s State) String() string {
	if s >= StateOpen && s <= StateCanceled {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool { return s >= StateOpen && s <= StateCanceled }

// Active reports whether s is OPEN, STARTED or ONGOING.
func (s State) Active() bool { return s == StateOpen || s == StateStarted || s == StateOngoing }

// Terminal reports whether s is COMPLETED, INCOMPLETE or CANCELED.
func (s State) Terminal() bool {
	return s == StateCompleted || s == StateIncomplete || s == StateCanceled
}

// Held reports whether a job in state s is held by a worker's lease (STARTED or ONGOING).
func (s State) Held() bool { return s == StateStarted || s == StateOngoing }

// ParseState parses a state name, case-insensitively.
func ParseState(s string) (State, error) {
	for _, st := range AllStates {
		if strings.EqualFold(s, st.String()) {
			return st, nil
		}
	}
	return 0, fmt.Errorf("job: unknown state %q", s)
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("job: invalid state %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	st, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = st
	return nil
}

// TransitionSources returns the states from which a worker holding the lease may move a job to
// `to` with Driver.Transition. OPEN → STARTED happens only through Driver.Lease and → CANCELED only
// through Driver.Cancel, so for those (and any other target) it returns nil.
func TransitionSources(to State) []State {
	switch to {
	case StateOngoing:
		return []State{StateStarted}
	case StateCompleted:
		return []State{StateOngoing}
	case StateIncomplete:
		return []State{StateStarted, StateOngoing}
	}
	return nil
}

// CanTransition reports whether Driver.Transition may move a job from `from` to `to`.
func CanTransition(from, to State) bool {
	for _, s := range TransitionSources(to) {
		if s == from {
			return true
		}
	}
	return false
}

// Counters are the delivery counters a worker reports with its heartbeats. They are absolute
// totals for the job (a worker that takes a job over starts from the stored values), not deltas.
// Each event of the window counts once in Read, and once in DuplicatesDropped or Delivered, however
// many workers held the job: a worker that takes a job over does not count again what an earlier
// holder had already counted above the checkpoint.
type Counters struct {
	Read              int64 `json:"read"`
	Delivered         int64 `json:"delivered"`
	DuplicatesDropped int64 `json:"duplicates_dropped"`
	Failed            int64 `json:"failed"`
	// Redelivered counts the deliveries of events an earlier holder of the job had already
	// reported delivered: a worker that takes a job over resumes at the checkpoint (the settled
	// prefix), and delivers again what was delivered above it. Deliveries an earlier holder made
	// after its last heartbeat were never reported, so the webhook may have received up to that
	// many more (at most the deliveries in flight plus a heartbeat interval's worth per takeover).
	Redelivered int64 `json:"redelivered"`
	// Unreadable is the number of the window's batches that could not be read (corrupt on disk):
	// their events were not delivered; the job's reason names their offsets and times.
	Unreadable int64 `json:"unreadable"`
}

// StatusEvent is where a finished job's replay_job_status event stands. A worker that finishes a
// job keeps its lease (Transition with StatusPending) until the event is delivered or given up
// (SettleStatus); should it die or stop meanwhile, the lease runs out and another worker leases
// the finished job to deliver it.
type StatusEvent uint8

// The status event's states.
const (
	// StatusEventNone: no status event is owed: the job is active or canceled, or it finished
	// without one (before status events were recorded).
	StatusEventNone StatusEvent = iota
	// StatusEventPending: the job is finished and its status event is being delivered by the
	// job's lease holder, or waits for a worker to lease it.
	StatusEventPending
	// StatusEventDelivered: the webhook accepted it.
	StatusEventDelivered
	// StatusEventGivenUp: it could not be delivered (the webhook refused it, or stayed down longer
	// than the workers' maximum outage).
	StatusEventGivenUp
)

var statusEventNames = [...]string{StatusEventNone: "", StatusEventPending: "pending", StatusEventDelivered: "delivered", StatusEventGivenUp: "given_up"}

// String is the stored and public name ("pending", "delivered", "given_up"; "" for none).
func (s StatusEvent) String() string {
	if int(s) < len(statusEventNames) {
		return statusEventNames[s]
	}
	return fmt.Sprintf("StatusEvent(%d)", uint8(s))
}

// ParseStatusEvent parses what String returns.
func ParseStatusEvent(s string) (StatusEvent, error) {
	for i, n := range statusEventNames {
		if s == n {
			return StatusEvent(i), nil
		}
	}
	return 0, fmt.Errorf("job: unknown status event state %q", s)
}

// MarshalText implements encoding.TextMarshaler.
func (s StatusEvent) MarshalText() ([]byte, error) {
	if int(s) >= len(statusEventNames) {
		return nil, fmt.Errorf("job: invalid status event state %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *StatusEvent) UnmarshalText(b []byte) error {
	v, err := ParseStatusEvent(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// NoCheckpoint is the checkpoint of a job none of whose events are known to be delivered yet.
const NoCheckpoint int64 = -1

// TopicProgress is a job's progress in one of the topics it reads (the local delivery_log and
// the mirrored ones): the offset below which every event of the topic's partition is settled
// (delivered, or dropped as a duplicate), and the topic's counters. A job taken over resumes each
// topic from its own checkpoint.
type TopicProgress struct {
	Topic      string `json:"topic"`
	Checkpoint int64  `json:"checkpoint"`
	// Read counts the topic's events of the window handed to dedup; DuplicatesDropped those of
	// them already seen (in any topic); Delivered those delivered.
	Read              int64 `json:"read"`
	Delivered         int64 `json:"delivered"`
	DuplicatesDropped int64 `json:"duplicates_dropped"`
	// Redelivered counts the topic's events delivered again after a takeover (Counters).
	Redelivered int64 `json:"redelivered,omitempty"`
}

// MaxTopics bounds a job's topic list.
const MaxTopics = 16

// ValidateTopics checks a job's topic progress: at most MaxTopics, each named (at most 249
// bytes, Kafka's limit) once, checkpoints ≥ NoCheckpoint, counters not negative.
func ValidateTopics(ts []TopicProgress) error {
	if len(ts) > MaxTopics {
		return fmt.Errorf("%d topics, at most %d", len(ts), MaxTopics)
	}
	seen := make(map[string]bool, len(ts))
	for i, t := range ts {
		switch {
		case t.Topic == "" || len(t.Topic) > 249:
			return fmt.Errorf("topic %d: a name of 1 to 249 bytes is required, not %q", i, t.Topic)
		case seen[t.Topic]:
			return fmt.Errorf("topic %q is listed twice", t.Topic)
		case t.Checkpoint < NoCheckpoint:
			return fmt.Errorf("topic %q: checkpoint %d must be >= -1", t.Topic, t.Checkpoint)
		case t.Read < 0 || t.Delivered < 0 || t.DuplicatesDropped < 0 || t.Redelivered < 0:
			return fmt.Errorf("topic %q: negative counters", t.Topic)
		}
		seen[t.Topic] = true
	}
	return nil
}

// EncodeTopics is the stored form of a job's topic progress (JSON; nil for none).
func EncodeTopics(ts []TopicProgress) []byte {
	if len(ts) == 0 {
		return nil
	}
	b, _ := json.Marshal(ts)
	return b
}

// DecodeTopics reads what EncodeTopics wrote (a store's bytes): empty is none; anything that is
// not a valid topic list is an error saying what is wrong.
func DecodeTopics(b []byte) ([]TopicProgress, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var ts []TopicProgress
	if err := json.Unmarshal(b, &ts); err != nil {
		return nil, fmt.Errorf("job: topic progress: %w", err)
	}
	if err := ValidateTopics(ts); err != nil {
		return nil, fmt.Errorf("job: topic progress: %w", err)
	}
	if len(ts) == 0 {
		return nil, nil
	}
	return ts, nil
}

// TopicCheckpoint is where a job resumes topic: its own checkpoint when the job has recorded
// one, else, for the first topic of a job that records none (one read from one topic), the job's
// Checkpoint, else NoCheckpoint.
func (j *Job) TopicCheckpoint(i int, topic string) int64 {
	for _, t := range j.Topics {
		if t.Topic == topic {
			return t.Checkpoint
		}
	}
	if i == 0 && len(j.Topics) == 0 {
		return j.Checkpoint
	}
	return NoCheckpoint
}

// Job is one replay request and its progress.
type Job struct {
	ID        int64 `json:"job_id,string"`
	AppID     int64 `json:"app_id,string"`
	WebhookID int64 `json:"webhook_id,string"`
	// Partition is the delivery_log partition the webhook's key maps to.
	Partition int32 `json:"partition"`
	// FromMs (inclusive) and ToMs (exclusive) bound the event timestamps to replay, in Unix ms.
	FromMs int64 `json:"from_ms"`
	ToMs   int64 `json:"to_ms"`
	State  State `json:"state"`
	// Reason describes why the job is INCOMPLETE or CANCELED (empty otherwise).
	Reason string `json:"reason,omitempty"`

	// Times come from the store's clock (the database's, never a worker's), in UTC. A zero
	// time.Time means "not yet".
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`

	// LeaseOwner is the worker that leased the job last; FencingToken counts leases (and cancels
	// and releases) and is what every holder's write is conditional on.
	LeaseOwner     string    `json:"lease_owner,omitempty"`
	FencingToken   int64     `json:"fencing_token"`
	HeartbeatAt    time.Time `json:"heartbeat_at,omitzero"`
	LeaseExpiresAt time.Time `json:"lease_expires_at,omitzero"`
	// LeaseTimeout is the holder's lease duration; each heartbeat sets LeaseExpiresAt to the
	// heartbeat time plus it.
	LeaseTimeout time.Duration `json:"-"`

	// Checkpoint is the Kafka offset below which every event of the window has been delivered
	// (NoCheckpoint = none yet). A job taken over resumes from here.
	Checkpoint int64    `json:"checkpoint"`
	Counters   Counters `json:"counts"`
	// FirstUndeliveredMs is the timestamp of the earliest event that could not be delivered.
	FirstUndeliveredMs *int64 `json:"first_undelivered_ms,omitempty"`
	// Topics is the progress per topic of a job read from several (nil: none recorded). Then
	// Checkpoint is the first topic's and Counters the totals.
	Topics []TopicProgress `json:"topics,omitempty"`
	// StatusEvent is where the job's replay_job_status event stands (none while it runs).
	StatusEvent StatusEvent `json:"status_event,omitzero"`
}

// UnderLease reports whether a worker's lease holds the job: it is STARTED or ONGOING, or it is
// finished and its status event is pending. Heartbeat and Release apply to such a job.
func (j *Job) UnderLease() bool {
	return j.State.Held() || (j.State.Terminal() && j.StatusEvent == StatusEventPending)
}

// Progress is what a worker checkpoints with a heartbeat or a transition.
type Progress struct {
	Checkpoint         int64
	Counters           Counters
	FirstUndeliveredMs *int64
	// Topics, when not empty, replaces the job's topic progress.
	Topics []TopicProgress
}

// validate checks the progress, for the params' Validate.
func (p *Progress) validate(errs []string) []string {
	if p == nil {
		return errs
	}
	if p.Checkpoint < NoCheckpoint {
		errs = append(errs, "Progress.Checkpoint must be >= -1")
	}
	if err := ValidateTopics(p.Topics); err != nil {
		errs = append(errs, "Progress.Topics: "+err.Error())
	}
	return errs
}

// Errors. Drivers wrap them with detail; test with errors.Is.
var (
	// ErrNotFound: no job with that id (or not visible to that app).
	ErrNotFound = errors.New("job: not found")
	// ErrActiveJobExists: the webhook already has an OPEN, STARTED or ONGOING job
	// (the API answers 409, code 355).
	ErrActiveJobExists = errors.New("job: a job is already in progress for this webhook")
	// ErrLeaseLost: the caller's fencing token is no longer the job's (another worker leased it,
	// or it was canceled). The caller must stop working on the job and deliver nothing more.
	ErrLeaseLost = errors.New("job: lease lost")
	// ErrInvalidTransition: the job's current state does not allow the requested change.
	ErrInvalidTransition = errors.New("job: invalid state transition")
	// ErrNoJob: Lease found no job to lease.
	ErrNoJob = errors.New("job: no job available to lease")
	// ErrInvalidParams: a params struct failed validation.
	ErrInvalidParams = errors.New("job: invalid parameters")
	// ErrClosed: the driver was closed.
	ErrClosed = errors.New("job: driver closed")
	// ErrUnavailable: the store could not answer (its database is down, unreachable, busy or
	// timed out). Drivers wrap their own error with it; the API answers 503/67.
	ErrUnavailable = errors.New("job: store unavailable")
)

// CreateParams are the arguments of Driver.Create.
type CreateParams struct {
	AppID     int64
	WebhookID int64
	Partition int32
	FromMs    int64 // inclusive
	ToMs      int64 // exclusive
}

// Validate checks the params.
func (p CreateParams) Validate() error {
	var errs []string
	if p.WebhookID <= 0 {
		errs = append(errs, "WebhookID must be positive")
	}
	if p.AppID <= 0 {
		errs = append(errs, "AppID must be positive")
	}
	if p.Partition < 0 {
		errs = append(errs, "Partition must not be negative")
	}
	if p.FromMs >= p.ToMs {
		errs = append(errs, "FromMs must be before ToMs")
	}
	return paramsError(errs)
}

// LeaseParams are the arguments of Driver.Lease.
type LeaseParams struct {
	// Owner names the worker (e.g. "host:pid/worker-3"); stored as the job's LeaseOwner.
	Owner string
	// Timeout is how long the lease lasts without a heartbeat before another worker may take the
	// job over; each heartbeat extends it by the same amount. Zero means the driver's
	// Options.LeaseTimeout.
	Timeout time.Duration
	// MaxPerApp, when positive, skips the jobs of an app that already has that many jobs held
	// (STARTED or ONGOING with an unexpired lease, by any worker of any instance): one app's
	// queue cannot take every worker while another app's jobs wait. Leases taken at the same
	// moment may each see room, so the cap can be passed by the leases in progress at once.
	MaxPerApp int
}

// Validate checks the params.
func (p LeaseParams) Validate() error {
	var errs []string
	if p.Owner == "" {
		errs = append(errs, "Owner must be set")
	}
	if p.Timeout < 0 {
		errs = append(errs, "Timeout must not be negative")
	}
	if p.MaxPerApp < 0 {
		errs = append(errs, "MaxPerApp must not be negative")
	}
	return paramsError(errs)
}

// HeartbeatParams are the arguments of Driver.Heartbeat.
type HeartbeatParams struct {
	ID           int64
	FencingToken int64
	// Progress, when non-nil, is checkpointed with the heartbeat.
	Progress *Progress
}

// Validate checks the params.
func (p HeartbeatParams) Validate() error {
	var errs []string
	if p.ID <= 0 {
		errs = append(errs, "ID must be positive")
	}
	if p.FencingToken <= 0 {
		errs = append(errs, "FencingToken must be positive")
	}
	errs = p.Progress.validate(errs)
	return paramsError(errs)
}

// TransitionParams are the arguments of Driver.Transition.
type TransitionParams struct {
	ID           int64
	FencingToken int64
	// To is ONGOING (from STARTED), COMPLETED (from ONGOING) or INCOMPLETE (from STARTED/ONGOING).
	To State
	// Reason is stored with COMPLETED and INCOMPLETE (required there), ignored for ONGOING.
	Reason string
	// Progress, when non-nil, is checkpointed with the transition.
	Progress *Progress
	// StatusPending, with COMPLETED or INCOMPLETE, records that the caller will now deliver the
	// job's status event: the job's StatusEvent becomes pending and the caller keeps its lease
	// (renewed from the store's now, as a heartbeat does) until SettleStatus. A job whose lease
	// then runs out (or is released) is leased again by Lease, finished, for its status event.
	StatusPending bool
}

// Validate checks the params.
func (p TransitionParams) Validate() error {
	var errs []string
	if p.ID <= 0 {
		errs = append(errs, "ID must be positive")
	}
	if p.FencingToken <= 0 {
		errs = append(errs, "FencingToken must be positive")
	}
	if TransitionSources(p.To) == nil {
		errs = append(errs, fmt.Sprintf("To must be ONGOING, COMPLETED or INCOMPLETE, not %s", p.To))
	}
	if p.To == StateIncomplete && p.Reason == "" {
		errs = append(errs, "Reason is required for INCOMPLETE")
	}
	if p.StatusPending && !p.To.Terminal() {
		errs = append(errs, "StatusPending is only for COMPLETED and INCOMPLETE")
	}
	errs = p.Progress.validate(errs)
	return paramsError(errs)
}

// ReleaseParams are the arguments of Driver.Release.
type ReleaseParams struct {
	ID           int64
	FencingToken int64
	// Progress, when non-nil, is checkpointed with the release.
	Progress *Progress
}

// Validate checks the params.
func (p ReleaseParams) Validate() error {
	var errs []string
	if p.ID <= 0 {
		errs = append(errs, "ID must be positive")
	}
	if p.FencingToken <= 0 {
		errs = append(errs, "FencingToken must be positive")
	}
	errs = p.Progress.validate(errs)
	return paramsError(errs)
}

// SettleStatusParams are the arguments of Driver.SettleStatus.
type SettleStatusParams struct {
	ID           int64
	FencingToken int64
	// Outcome is StatusEventDelivered or StatusEventGivenUp.
	Outcome StatusEvent
}

// Validate checks the params.
func (p SettleStatusParams) Validate() error {
	var errs []string
	if p.ID <= 0 {
		errs = append(errs, "ID must be positive")
	}
	if p.FencingToken <= 0 {
		errs = append(errs, "FencingToken must be positive")
	}
	if p.Outcome != StatusEventDelivered && p.Outcome != StatusEventGivenUp {
		errs = append(errs, fmt.Sprintf("Outcome must be delivered or given_up, not %q", p.Outcome))
	}
	return paramsError(errs)
}

// GetParams are the arguments of Driver.Get.
type GetParams struct {
	ID int64
	// AppID, when non-zero, restricts the lookup to that app's jobs (others are ErrNotFound).
	AppID int64
}

// CancelParams are the arguments of Driver.Cancel.
type CancelParams struct {
	ID int64
	// AppID, when non-zero, restricts the cancel to that app's jobs (others are ErrNotFound).
	AppID  int64
	Reason string
}

// ListParams are the arguments of Driver.List. Jobs come newest first (descending id).
type ListParams struct {
	AppID     int64   // 0 = any app
	WebhookID int64   // 0 = any webhook
	States    []State // empty = any state
	// BeforeID is the keyset cursor: only jobs with id < BeforeID (0 = from the newest). Pass the
	// previous page's ListResult.NextBeforeID.
	BeforeID int64
	// Limit is the page size; 0 means 100, at most 1000.
	Limit int
}

// CountParams are the arguments of Driver.Count.
type CountParams struct {
	AppID int64 // 0 = every app
}

// DefaultListLimit and MaxListLimit bound ListParams.Limit.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Normalize validates the params and returns them with the limit defaulted.
func (p ListParams) Normalize() (ListParams, error) {
	var errs []string
	if p.Limit < 0 || p.Limit > MaxListLimit {
		errs = append(errs, fmt.Sprintf("Limit must be within 0..%d", MaxListLimit))
	}
	if p.BeforeID < 0 {
		errs = append(errs, "BeforeID must not be negative")
	}
	for _, s := range p.States {
		if !s.Valid() {
			errs = append(errs, fmt.Sprintf("invalid state %s", s))
		}
	}
	if p.Limit == 0 {
		p.Limit = DefaultListLimit
	}
	return p, paramsError(errs)
}

// ListResult is one page of Driver.List.
type ListResult struct {
	Jobs []*Job
	// NextBeforeID is the cursor for the next page, 0 when this is the last page.
	NextBeforeID int64
}

// Driver is the job store. Implementations: mysqljob (production, shared by any number of replayd
// instances) and embeddedjob (single process). Every method honours its context and is safe for
// concurrent use. All times are taken from the store's clock.
type Driver interface {
	// Create stores a new OPEN job. It fails with ErrActiveJobExists, atomically, if the webhook
	// already has an OPEN, STARTED or ONGOING job.
	Create(ctx context.Context, p CreateParams) (*Job, error)
	// Lease takes the job that has waited longest: an OPEN job (since its creation, becoming
	// STARTED), a STARTED/ONGOING job whose lease expired (since its expiry, keeping its state
	// and checkpoint), or a finished job with its status event pending whose lease expired
	// (keeping its state: the caller delivers the status event). It bumps the fencing token,
	// records the owner and starts the lease. ErrNoJob when there is none.
	Lease(ctx context.Context, p LeaseParams) (*Job, error)
	// Heartbeat extends the lease and optionally checkpoints progress, if FencingToken is still
	// the job's and the job is under lease (Job.UnderLease: STARTED or ONGOING, or finished with
	// its status event pending; progress is not taken then); otherwise ErrLeaseLost.
	Heartbeat(ctx context.Context, p HeartbeatParams) error
	// Transition changes the state of a held job, conditional on the fencing token (ErrLeaseLost)
	// and on the current state (ErrInvalidTransition). It renews the lease only with
	// StatusPending: ONGOING leaves it as it is, as the worker's own count of its lease does
	// (only Lease and heartbeats renew it there).
	Transition(ctx context.Context, p TransitionParams) error
	// Release gives a held job back (a worker's graceful shutdown): if FencingToken is still the
	// job's and the job is under lease (otherwise ErrLeaseLost, as Heartbeat; ErrNotFound
	// for a missing job), it optionally checkpoints progress, sets the lease expiry to the store's
	// now, so that the next Lease anywhere takes the job at once, ordered as an expired lease
	// (keeping its state, checkpoint and counters), and bumps the fencing token, so that the
	// releaser can change nothing afterwards: its later Heartbeat, Transition or Release fail with
	// ErrLeaseLost. The next Lease bumps the token again as always.
	Release(ctx context.Context, p ReleaseParams) error
	// SettleStatus records the outcome of a finished job's status event and ends the lease, if
	// FencingToken is still the job's (ErrLeaseLost) and its status event is pending
	// (ErrInvalidTransition; ErrNotFound for a missing job).
	SettleStatus(ctx context.Context, p SettleStatusParams) error
	// Get returns one job, or ErrNotFound.
	Get(ctx context.Context, p GetParams) (*Job, error)
	// List returns a page of jobs matching the filters, newest first.
	List(ctx context.Context, p ListParams) (*ListResult, error)
	// Count returns how many jobs are in each state; states with none are absent. It feeds the
	// jobs-by-state metric.
	Count(ctx context.Context, p CountParams) (map[State]int64, error)
	// Cancel moves an active job to CANCELED and bumps its fencing token so that its holder's
	// next write fails with ErrLeaseLost. Canceling a CANCELED job returns it unchanged; a
	// COMPLETED or INCOMPLETE one is ErrInvalidTransition.
	Cancel(ctx context.Context, p CancelParams) (*Job, error)
	// Ping reports whether the store answers (for health checks).
	Ping(ctx context.Context) error
	// Close releases the driver's resources. It is idempotent; other calls afterwards fail with
	// ErrClosed.
	Close() error
}

func paramsError(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidParams, strings.Join(errs, "; "))
}

// DiagnoseFencedFailure builds the error for a fenced write (heartbeat, release or transition)
// that matched nothing, from the job's current token, state and owner. Drivers share it so both
// say the same. A stale token is ErrLeaseLost; so is a job no longer held for a heartbeat or a
// release (what "heartbeat" or "release": the lease ended with the job); for a transition
// (any other what) the wrong state is ErrInvalidTransition.
func DiagnoseFencedFailure(id, token, current int64, state, owner, what string) error {
	if current != token {
		return fmt.Errorf("job %d: %s: %w: fencing token %d is stale, the job is at %d (state %s, owner %q)",
			id, what, ErrLeaseLost, token, current, state, owner)
	}
	st, _ := ParseState(state)
	if what == "heartbeat" || what == "release" || !st.Valid() {
		return fmt.Errorf("job %d: %s: %w: the job is %s", id, what, ErrLeaseLost, state)
	}
	return fmt.Errorf("job %d: %s: %w: the job is %s", id, what, ErrInvalidTransition, state)
}

// CheckCanceled is the outcome of a cancel that found job j afterwards: nil if j is CANCELED,
// ErrInvalidTransition if it had already finished otherwise.
func CheckCanceled(j *Job) error {
	if j.State == StateCanceled {
		return nil
	}
	return fmt.Errorf("job %d: cancel: %w: the job is %s", j.ID, ErrInvalidTransition, j.State)
}
