// Package delivery POSTs replayed events to a webhook, signed as the Account Activity API signs
// them, with per-webhook rate limits, bounded retries and a dial-time guard against private hosts.
//
// A process builds one Client (New) and shares it among all jobs: the rate limiter of a webhook
// lives in the Client, so two jobs for the same webhook share its budget. Deliver sends one event;
// IsRetryable is the single rule for what is tried again; Challenge runs the CRC check used when a
// webhook is registered; InOrder turns out-of-order completions into a resumable checkpoint when a
// job delivers with Concurrency > 1.
package delivery
