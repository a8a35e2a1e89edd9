package delivery

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.Timeout != 10*time.Second || o.MaxAttempts != 6 || o.BackoffBase != 200*time.Millisecond ||
		o.BackoffMax != 30*time.Second || o.MaxRetryAfter != time.Minute || o.RateLimit != 2500 ||
		o.RateBurst != 100 || o.Concurrency != 1 || o.MaxIdleConnsPerHost < o.Concurrency ||
		o.AllowPrivate || o.UserAgent == "" {
		t.Errorf("defaults %+v", o)
	}
	big := Options{Concurrency: 200}
	big.EnsureDefaults()
	if big.MaxIdleConnsPerHost < 200 {
		t.Errorf("MaxIdleConnsPerHost %d below Concurrency 200", big.MaxIdleConnsPerHost)
	}
}

func TestOptionsValidateReportsAll(t *testing.T) {
	o := Options{
		Timeout:             -1,
		MaxAttempts:         -2,
		BackoffBase:         time.Second,
		BackoffMax:          time.Millisecond,
		MaxRetryAfter:       -time.Second,
		RateLimit:           math.NaN(),
		RateBurst:           -1,
		Concurrency:         8,
		MaxIdleConnsPerHost: 2,
	}
	o.EnsureDefaults()
	err := o.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"Timeout", "MaxAttempts", "BackoffMax", "MaxRetryAfter", "RateLimit", "RateBurst", "MaxIdleConnsPerHost"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := New(o); err == nil {
		t.Error("New accepted invalid options")
	}
	var bare Options
	if err := bare.Validate(); err == nil || !strings.Contains(err.Error(), "EnsureDefaults") {
		t.Errorf("zero options without EnsureDefaults: %v", err)
	}
}
