package api

import (
	"context"
	"errors"
	"net"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/job"
)

// Error codes of the public API (Account Activity Replay API, v1.1), and this service's own
// (1000 and above) for the endpoints beyond it.
const (
	CodeInternal         = 0    // 500: an unexpected error
	CodeAuth             = 32   // 401: missing or unknown bearer token
	CodeNotFound         = 34   // 404: unknown webhook or job, or another app's
	CodeUnavailable      = 67   // 503: a store did not answer
	CodeRateLimited      = 88   // 429: the app's replay requests exceeded RateLimit per RateWindow
	CodeWebhookURL       = 214  // 400: the webhook URL is invalid, already registered, or failed the CRC check
	CodeJobInProgress    = 355  // 409: a job is already active for the webhook
	CodeInvalidWindow    = 356  // 400: from_date not before to_date, or outside the retention
	CodeMissingParameter = 357  // 400: a required query parameter is missing
	CodeUnparsable       = 358  // 400: a query parameter cannot be parsed
	CodeNotInPast        = 368  // 400: a date is not in the past
	CodeJobFinished      = 1001 // 409: canceling a job that already completed or gave up
	CodeMethodNotAllowed = 1002 // 405: the path exists, but not for this method (see the Allow header)
)

// Messages of the fixed-text errors.
const (
	msgAuth        = "Could not authenticate you."
	msgNotFound    = "Sorry, that page does not exist."
	msgRateLimited = "Rate limit exceeded."
	msgInternal    = "Internal error."
	msgUnavailable = "Service is temporarily unavailable; please retry."
	msgInProgress  = "A replay job is already in progress for this webhook."
	msgWebhookURL  = "Webhook URL does not meet the requirements."
)

// apiError is one error answer: an HTTP status and the public API's code and message.
type apiError struct {
	Status  int
	Code    int
	Message string
}

type errorBody struct {
	Errors []errorItem `json:"errors"`
}

type errorItem struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// unavailable reports whether err means a store could not answer (503/67) rather than a bug or an
// unexpected failure (500/0): deadlines and cancellations, a closed driver, a network error, and
// what the stores report as their ErrUnavailable (for MySQL: broken or refused connections, a
// busy server, deadlocks or lock waits that outlasted the retries; mysqldb.IsUnavailable).
func unavailable(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, job.ErrClosed) || errors.Is(err, app.ErrClosed) ||
		errors.Is(err, job.ErrUnavailable) || errors.Is(err, app.ErrUnavailable) ||
		errors.As(err, &ne)
}
