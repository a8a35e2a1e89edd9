// Package delivery POSTs replayed events to a webhook, signed as the Account Activity API signs
// them, with per-webhook rate limits, bounded retries and a dial-time guard against private hosts.
package delivery
