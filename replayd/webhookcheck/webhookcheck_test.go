package webhookcheck_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/webhookcheck"
)

type challenger struct {
	mu    sync.Mutex
	down  map[string]bool
	calls []string
}

func (c *challenger) challenge(_ context.Context, url string, _ ...[]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, url)
	if c.down[url] {
		return errors.New("connection refused")
	}
	return nil
}

func (c *challenger) set(url string, down bool) {
	c.mu.Lock()
	c.down[url] = down
	c.mu.Unlock()
}

func setup(t *testing.T) (app.Driver, []*app.Webhook) {
	t.Helper()
	d, err := embeddedapp.Open(embeddedapp.Options{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var hooks []*app.Webhook
	for i, name := range []string{"a", "b"} {
		a, err := d.CreateApp(t.Context(), app.CreateAppParams{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{"https://example.com/" + name + "/1", "https://example.com/" + name + "/2"}[:i+1] {
			wh, err := d.CreateWebhook(t.Context(), app.CreateWebhookParams{AppID: a.App.ID, URL: u, Valid: true})
			if err != nil {
				t.Fatal(err)
			}
			hooks = append(hooks, wh)
		}
	}
	return d, hooks
}

func valid(t *testing.T, d app.Driver, wh *app.Webhook) bool {
	t.Helper()
	got, err := d.GetWebhook(t.Context(), app.GetWebhookParams{ID: wh.ID})
	if err != nil {
		t.Fatal(err)
	}
	return got.Valid
}

// TestCheckAll: a webhook that fails its check is marked invalid, one that passes again is
// marked valid, and every webhook of every app is challenged once per round.
func TestCheckAll(t *testing.T) {
	d, hooks := setup(t)
	ch := &challenger{down: map[string]bool{}}
	c, err := webhookcheck.New(webhookcheck.Options{Apps: d, Challenge: ch.challenge})
	if err != nil {
		t.Fatal(err)
	}
	ch.set(hooks[1].URL, true)
	res, err := c.CheckAll(t.Context())
	if err != nil || res.Checked != 3 || res.Valid != 2 || res.Invalid != 1 || len(res.Changed) != 1 || res.Changed[0].ID != hooks[1].ID {
		t.Fatalf("round 1: %+v, %v", res, err)
	}
	if len(ch.calls) != 3 || valid(t, d, hooks[1]) || !valid(t, d, hooks[0]) || !valid(t, d, hooks[2]) {
		t.Fatalf("after round 1: calls %v, validity %v %v %v", ch.calls, valid(t, d, hooks[0]), valid(t, d, hooks[1]), valid(t, d, hooks[2]))
	}
	ch.set(hooks[1].URL, false)
	res, err = c.CheckAll(t.Context())
	if err != nil || res.Invalid != 0 || len(res.Changed) != 1 || !res.Changed[0].Valid || !valid(t, d, hooks[1]) {
		t.Fatalf("round 2: %+v, %v", res, err)
	}
}

// TestStartStop: scheduled rounds run every Interval and Stop ends them (twice is fine).
func TestStartStop(t *testing.T) {
	d, hooks := setup(t)
	ch := &challenger{down: map[string]bool{hooks[0].URL: true}}
	c, err := webhookcheck.New(webhookcheck.Options{Apps: d, Challenge: ch.challenge, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); err == nil {
		t.Fatal("a second Start succeeded")
	}
	select {
	case res := <-c.Rounds():
		if res.Checked != 3 || res.Invalid != 1 {
			t.Fatalf("scheduled round: %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no scheduled round within 10s")
	}
	if valid(t, d, hooks[0]) {
		t.Fatal("the scheduled round did not mark the failing webhook invalid")
	}
	c.Stop()
	c.Stop()
}

func TestOptionsValidate(t *testing.T) {
	_, err := webhookcheck.New(webhookcheck.Options{Interval: -1})
	for _, want := range []string{"Apps", "Challenge", "Interval"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("New with bad options: %v, want it to name %s", err, want)
		}
	}
}
