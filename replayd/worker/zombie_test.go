package worker_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/mysqljob"
	"github.com/replay/replay/replayd/mysqldb/mysqldbtest"
	"github.com/replay/replay/replayd/testwait"
	"github.com/replay/replay/replayd/worker"
)

// The zombie tests: an instance that can no longer renew its lease must stop delivering on its
// own clock, before another instance can take the job over. Both run two instances on MariaDB
// with a 2s lease, and hold one of them up mid-job: its connection to the store hangs, or the
// whole process is stopped (SIGSTOP). Another instance takes the job over; the held one must
// deliver nothing after that moment.

const (
	zombieLease     = 2 * time.Second
	zombieHeartbeat = 300 * time.Millisecond
)

// arrival is one delivery as the webhook saw it.
type arrival struct {
	who string
	at  time.Time
}

// arrivals records deliveries from every instance on one clock, and signals each one.
type arrivals struct {
	mu   sync.Mutex
	all  []arrival
	each chan arrival
}

func newArrivals() *arrivals { return &arrivals{each: make(chan arrival, 100000)} }

func (a *arrivals) add(who string) {
	ar := arrival{who, time.Now()}
	a.mu.Lock()
	a.all = append(a.all, ar)
	a.mu.Unlock()
	a.each <- ar
}

// waitFor waits until n deliveries of who arrived (counting from the start) and returns when the
// n-th did.
func (a *arrivals) waitFor(t *testing.T, who string, n int) time.Time {
	t.Helper()
	var at time.Time
	testwait.For(t, 60*time.Second, fmt.Sprintf("%d deliveries from %s", n, who), func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		c := 0
		for _, ar := range a.all {
			if ar.who == who {
				if c++; c == n {
					at = ar.at
					return true
				}
			}
		}
		return false
	})
	return at
}

// after counts who's deliveries that arrived after t.
func (a *arrivals) after(who string, t time.Time) (n int, last time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ar := range a.all {
		if ar.who == who {
			last = ar.at
			if ar.at.After(t) {
				n++
			}
		}
	}
	return n, last
}

// slowDeliverer is a webhook 5 ms away, in process, recording who delivered.
type slowDeliverer struct {
	who string
	a   *arrivals
}

func (d slowDeliverer) Deliver(ctx context.Context, _ worker.Target, _ []byte) (delivery.Result, error) {
	if err := ctx.Err(); err != nil {
		return delivery.Result{}, err
	}
	d.a.add(d.who)
	t := time.NewTimer(5 * time.Millisecond) // the webhook's latency
	defer t.Stop()
	select {
	case <-t.C:
		return delivery.Result{Attempts: 1, Status: 200}, nil
	case <-ctx.Done():
		return delivery.Result{}, ctx.Err()
	}
}

// hangingProxy forwards TCP connections to upstream until hang is called; from then on it
// forwards nothing in either direction and answers no new connection: the peer's calls hang, as
// with a network partition or a stopped middlebox.
type hangingProxy struct {
	ln       net.Listener
	upstream string
	hung     chan struct{}
	once     sync.Once
}

func newHangingProxy(t *testing.T, upstream string) *hangingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangingProxy{ln: ln, upstream: upstream, hung: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *hangingProxy) hang() { p.once.Do(func() { close(p.hung) }) }

func (p *hangingProxy) serve(c net.Conn) {
	defer c.Close()
	select {
	case <-p.hung:
		<-make(chan struct{}) // never answered; closed with the process
	default:
	}
	u, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer u.Close()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-p.hung:
				<-make(chan struct{})
			default:
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(u, c)
	pipe(c, u)
}

// TestNoDeliveryAfterTakeoverWhenTheStoreHangs: instance A's connections to the job store hang
// mid-job. Its heartbeats cannot succeed, so its lease runs out on its own clock and it stops;
// instance B takes the job over once the store's lease expired. A delivers nothing after B's
// first delivery, and nothing of the window is missing.
func TestNoDeliveryAfterTakeoverWhenTheStoreHangs(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 6000, 7)
	dsn := mysqldbtest.Database(t)
	proxy := newHangingProxy(t, "127.0.0.1:3306")
	if !strings.Contains(dsn, "tcp(127.0.0.1:3306)") {
		t.Fatalf("DSN %q does not name 127.0.0.1:3306", dsn)
	}
	jobsA, err := mysqljob.Open(t.Context(), mysqljob.Options{DSN: strings.Replace(dsn, "127.0.0.1:3306", proxy.ln.Addr().String(), 1)})
	if err != nil {
		t.Fatal(err)
	}
	jobsB, err := mysqljob.Open(t.Context(), mysqljob.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jobsB.Close() })
	n, _ := w.log.Partitions(t.Context())
	from, to := t0, t0+3600_000
	j, err := jobsB.Create(t.Context(), job.CreateParams{AppID: 1, WebhookID: webhookA,
		Partition: engine.PartitionFor([]byte(strconv.FormatInt(webhookA, 10)), n), FromMs: from, ToMs: to})
	if err != nil {
		t.Fatal(err)
	}
	got := newArrivals()
	opts := func(jobs job.Driver, who string) func(*worker.Options) {
		return func(o *worker.Options) {
			o.Jobs, o.Deliverer, o.Workers = jobs, slowDeliverer{who, got}, 1
			o.LeaseTimeout, o.HeartbeatInterval = zombieLease, zombieHeartbeat
		}
	}
	a := w.pool(t, "a", opts(jobsA, "a"))
	got.waitFor(t, "a", 20)
	proxy.hang()
	hungAt := time.Now()
	w.pool(t, "b", opts(jobsB, "b"))
	tookOver := got.waitFor(t, "b", 1)
	testwait.For(t, 120*time.Second, "the job to complete", func() bool {
		j, err := jobsB.Get(t.Context(), job.GetParams{ID: j.ID})
		return err == nil && j.State == job.StateCompleted
	})
	zombies, lastA := got.after("a", tookOver)
	t.Logf("store hung at %v; A's last delivery %v after; B's first %v after", 0, lastA.Sub(hungAt), tookOver.Sub(hungAt))
	if zombies > 0 {
		t.Fatalf("instance A delivered %d events after instance B took the job over (A's last %v after the hang, B's first %v after)",
			zombies, lastA.Sub(hungAt), tookOver.Sub(hungAt))
	}
	if lastA.Sub(hungAt) > zombieLease {
		t.Fatalf("A delivered %v after its store hung, past its lease of %v", lastA.Sub(hungAt), zombieLease)
	}
	// A's pool stops even though its store still hangs (the stop cancels its calls).
	stopCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := a.Stop(stopCtx); err != nil {
		t.Fatalf("stopping A with its store hanging: %v", err)
	}
	jobsA.Close()
}

// TestNoDeliveryAfterTakeoverWhenStopped: instance A (another process) is stopped with SIGSTOP
// mid-job for longer than its lease; instance B takes the job over; when A runs again it finds
// its lease run out on its own clock and delivers nothing more.
func TestNoDeliveryAfterTakeoverWhenStopped(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 6000, 8)
	dsn := mysqldbtest.Database(t)
	jobsB, err := mysqljob.Open(t.Context(), mysqljob.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jobsB.Close() })
	n, _ := w.log.Partitions(t.Context())
	j, err := jobsB.Create(t.Context(), job.CreateParams{AppID: 1, WebhookID: webhookA,
		Partition: engine.PartitionFor([]byte(strconv.FormatInt(webhookA, 10)), n), FromMs: t0, ToMs: t0 + 3600_000})
	if err != nil {
		t.Fatal(err)
	}
	got := newArrivals()
	webhook := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		got.add(r.UserAgent())
		time.Sleep(5 * time.Millisecond) // the webhook's latency
	}))
	t.Cleanup(webhook.Close)

	child := exec.Command(os.Args[0], "-test.run=^TestZombieChildProcess$", "-test.v")
	child.Env = append(os.Environ(), "REPLAY_ZOMBIE_CHILD=1", "REPLAY_ZOMBIE_DSN="+dsn,
		"REPLAY_ZOMBIE_LOG="+w.dir, "REPLAY_ZOMBIE_WEBHOOK="+webhook.URL)
	stderr, err := child.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stdout = io.Discard
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	abandoned := make(chan string, 1)
	var childLog strings.Builder
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			childLog.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if strings.Contains(sc.Text(), "job abandoned") {
				abandoned <- sc.Text()
			}
		}
	}()
	defer func() {
		if t.Failed() {
			logMu.Lock()
			t.Logf("instance A's log:\n%s", childLog.String())
			logMu.Unlock()
		}
	}()

	got.waitFor(t, "zombie-a", 20)
	if err := child.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	w.pool(t, "b", func(o *worker.Options) {
		o.Jobs, o.Deliverer, o.Workers = jobsB, slowDeliverer{"b", got}, 1
		o.LeaseTimeout, o.HeartbeatInterval = zombieLease, zombieHeartbeat
	})
	tookOver := got.waitFor(t, "b", 1)
	if err := child.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumedAt := time.Now()
	testwait.Recv(t, abandoned, 60*time.Second) // instance A abandons the job after SIGCONT
	testwait.For(t, 120*time.Second, "the job to complete", func() bool {
		j, err := jobsB.Get(t.Context(), job.GetParams{ID: j.ID})
		return err == nil && j.State == job.StateCompleted
	})
	zombies, lastA := got.after("zombie-a", tookOver)
	t.Logf("A stopped for %v; B took over %v after the stop; A's last delivery %v after the stop",
		resumedAt.Sub(stoppedAt), tookOver.Sub(stoppedAt), lastA.Sub(stoppedAt))
	if zombies > 0 {
		t.Fatalf("instance A delivered %d events after instance B took the job over", zombies)
	}
}

// TestZombieChildProcess is instance A of TestNoDeliveryAfterTakeoverWhenStopped, run in a child
// process: one worker over the parent's log (read in place), its own index, the job store on
// MariaDB and a real delivery client whose User-Agent names it.
func TestZombieChildProcess(t *testing.T) {
	if os.Getenv("REPLAY_ZOMBIE_CHILD") != "1" {
		return // only as a child of TestNoDeliveryAfterTakeoverWhenStopped
	}
	ctx := context.Background()
	src, err := engine.OpenDir(engine.DirOptions{Dir: os.Getenv("REPLAY_ZOMBIE_LOG")})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := index.Open(index.Options{Dir: t.TempDir(), Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Build(ctx, src, index.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	jobs, err := mysqljob.Open(ctx, mysqljob.Options{DSN: os.Getenv("REPLAY_ZOMBIE_DSN")})
	if err != nil {
		t.Fatal(err)
	}
	client, err := delivery.New(delivery.Options{AllowPrivate: true, UserAgent: "zombie-a", RateLimit: 1e9})
	if err != nil {
		t.Fatal(err)
	}
	url := os.Getenv("REPLAY_ZOMBIE_WEBHOOK")
	p, err := worker.New(worker.Options{
		Jobs: jobs, Source: src, Locator: worker.IndexLocator(ix, src),
		Targets: func(_ context.Context, id int64) (worker.Target, error) {
			return worker.Target{WebhookID: strconv.FormatInt(id, 10), URL: url, Secret: []byte("s")}, nil
		},
		Deliverer: client, NewDeduper: func() worker.Deduper { return mapDedup{} },
		Name: "a", Workers: 1, PollInterval: 10 * time.Millisecond,
		LeaseTimeout: zombieLease, HeartbeatInterval: zombieHeartbeat,
		Metrics: worker.NewMetrics(prometheus.NewRegistry()),
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-make(chan struct{}) // until the parent kills this process
}
