package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/server"
)

// chromium is Debian's headless browser, which the console's end-to-end test drives. ./test.sh
// installs it where it is missing.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: the console's browser test needs Debian's chromium (apt-get install -y chromium; ./test.sh installs it)")
	return ""
}

// browser starts a headless Chromium and returns a chromedp context in it.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1500, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// The console in a real browser, against a running server with a replay in progress to a slow
// webhook: the login form, the job's row, its progress moving while the page stays open (the
// script's polling, not a reload), the final state and counts, the job page's completion event
// and the webhooks page. A screenshot of the jobs page mid-replay goes to
// $REPLAY_CONSOLE_SCREENSHOT when set (docs/console.png in README).
func TestConsoleInBrowser(t *testing.T) {
	const operator = "operator-token-for-the-console-test"
	e := startE2E(t, func(c *server.Config) {
		c.StrictOrder = true                     // one delivery at a time: the replay lasts
		c.LeaseTimeout = 1500 * time.Millisecond // heartbeats, which carry the counters, every 500 ms
		c.OperatorToken = operator
	})
	now := time.Now().UTC().Truncate(time.Minute)
	e.produce(1500, now.Add(-3*time.Hour), 2*time.Hour)
	from, to := now.Add(-150*time.Minute), now.Add(-90*time.Minute)
	want := e.want(from, to)
	e.sink.SetFaults(receiver.Faults{Latency: 20 * time.Millisecond})
	base := "http://" + e.srv.Addr()
	ctx := browser(t)
	var jobID string
	cell := func(field string) string { return fmt.Sprintf(`tr[data-job="%s"] [data-f="%s"]`, jobID, field) }
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	// waitJS waits in the page for a JavaScript condition.
	waitJS := func(what, cond string, timeout time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			page, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
			t.Fatalf("waiting for %s: %v; the page shows:\n%s", what, err, page)
		}
	}
	num := func(field string) string {
		return fmt.Sprintf(`Number((document.querySelector('%s') || {}).textContent)`, cell(field))
	}

	// Without a token: the login form. The app's token logs in.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.ID("token"))); err != nil {
		t.Fatalf("opening the console: %v", err)
	}
	title, _ := chromedp.Run(ctx, chromedp.Title())
	if !strings.Contains(title, "Log in") {
		t.Fatalf("the console without a token shows %q, want the login form", title)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), e.token), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("jobs"))); err != nil {
		t.Fatalf("logging in: %v", err)
	}
	// The replay starts once the console is open, and the jobs page shows its row.
	jobID, code := e.replay(from, to)
	if code != http.StatusAccepted {
		t.Fatalf("replay request: %d", code)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS(cell("state")))); err != nil {
		t.Fatalf("the jobs page has no row for job %s: %v", jobID, err)
	}
	// Progress moves while the page stays open (a mark set on it now is still there at the
	// end: the script updated it, no reload did): delivered grows, the bar with it.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.stillTheSamePage = true`)); err != nil {
		t.Fatal(err)
	}
	waitJS("events delivered while the job runs", fmt.Sprintf(`%s > 0 && document.querySelector('%s').textContent === 'ONGOING'`, num("delivered"), cell("state")), 60*time.Second)
	first, _ := strconv.Atoi(text(cell("delivered")))
	barJS := fmt.Sprintf(`document.querySelector('tr[data-job="%s"] progress').value`, jobID)
	bar1, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](barJS))
	waitJS("delivered to grow past "+strconv.Itoa(first), fmt.Sprintf(`%s > %d`, num("delivered"), first), 60*time.Second)
	bar2, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](barJS))
	if !(bar2 > bar1) && text(cell("state")) == "ONGOING" {
		t.Errorf("the progress bar did not move (%v, then %v) while delivered grew", bar1, bar2)
	}
	if text(cell("rate")) == "–" {
		t.Errorf("no events/s shown for a running job")
	}
	if path := os.Getenv("REPLAY_CONSOLE_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatal("the screenshot is not a PNG")
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The final state, still without a reload.
	waitJS("the job to show COMPLETED", fmt.Sprintf(`document.querySelector('%s').textContent === 'COMPLETED'`, cell("state")), 90*time.Second)
	if got, wantN := text(cell("delivered")), strconv.Itoa(len(want)); got != wantN {
		t.Errorf("delivered shows %s, want %s", got, wantN)
	}
	if got := text(cell("percent")); got != "100.0%" {
		t.Errorf("a completed job's progress shows %s", got)
	}
	if same, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.stillTheSamePage === true`)); err != nil || !same {
		t.Errorf("the jobs page was reloaded to show the progress (%v)", err)
	}
	if got := text(cell("duplicates")); got == "0" {
		t.Errorf("duplicates dropped shows 0; the window had re-produced events")
	}
	// The job page: what the completion event said.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/console/jobs/"+jobID), chromedp.WaitVisible(chromedp.ID("completion"))); err != nil {
		t.Fatal(err)
	}
	if got := text("#completion"); !strings.Contains(got, `"job_state": "Complete"`) || !strings.Contains(got, "Job completed successfully") || !strings.Contains(got, jobID) {
		t.Errorf("the job page's completion event: %s", got)
	}
	if st := e.waitStatus(jobID); st.State != "Complete" {
		t.Fatalf("the webhook's status event: %+v", st)
	}
	// The webhooks page: the sink's URL, valid, with its last check.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/console/webhooks"), chromedp.WaitVisible(chromedp.ID("webhooks"))); err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf(`tr[data-webhook="%d"]`, e.webhook)
	if got := text(row); !strings.Contains(got, e.sinkURL) || !strings.Contains(got, "valid") {
		t.Errorf("the webhooks page's row: %q", got)
	}
	// An app's token has no instance page; the operator's has, with every partition's lag.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/console/instance"), chromedp.WaitVisible(chromedp.CSS("h1"))); err != nil {
		t.Fatal(err)
	}
	if got := text("h1"); got != "Operators only" {
		t.Errorf("the instance page for an app's token: %q", got)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/console/login"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), operator), chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(chromedp.ID("jobs")),
		chromedp.Navigate(base+"/console/instance"), chromedp.WaitVisible(chromedp.ID("lag"))); err != nil {
		t.Fatal(err)
	}
	if partitions, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#lag tbody tr').length`)); err != nil || partitions != 4 {
		t.Errorf("the instance page lists %d partitions' lag (%v), want 4", partitions, err)
	}
	if got := text("#throughput"); !strings.Contains(got, "Delivered since start") {
		t.Errorf("the instance page's throughput: %q", got)
	}
}
