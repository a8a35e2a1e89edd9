package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/server"
)

// The benchmarks that need a webhook or a replayd in a process of its own (so that the sink's
// work is not on the replaying process's heap and scheduler, and a replayd's peak RSS is its own)
// re-execute this binary with childEnv naming the role. The test binary does the same (TestMain),
// so the Go benchmarks and TestQuick run the same processes.
const (
	childEnv        = "REPLAY_BENCH_CHILD"      // "sink" or "serve"
	childSecretEnv  = "REPLAY_BENCH_SECRET"     // sink: the app secret, hex
	childDataEnv    = "REPLAY_BENCH_DATA"       // serve: the data directory
	childRateEnv    = "REPLAY_BENCH_RATE"       // serve: the per-webhook rate limit, events/s; 0: none
	childProfileEnv = "REPLAY_BENCH_CPUPROFILE" // either: write a CPU profile of the child here
)

// runChildIfAsked runs the child role the environment names, if any, and exits.
func runChildIfAsked() {
	role := os.Getenv(childEnv)
	if role == "" {
		return
	}
	if err := runChild(role); err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runChild serves its role until its stdin ends (the parent closed it, or died), having printed
// the address it listens on as its first line of stdout.
func runChild(role string) error {
	if p := os.Getenv(childProfileEnv); p != "" {
		stop, err := startCPUProfile(p)
		if err != nil {
			return err
		}
		defer stop()
	}
	ctx := context.Background()
	var addr string
	var stop func() error
	switch role {
	case "sink":
		secret, err := hex.DecodeString(os.Getenv(childSecretEnv))
		if err != nil {
			return fmt.Errorf("%s: %w", childSecretEnv, err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		// No record and no deliveries kept: the sink verifies, counts and answers, and keeps
		// only the time of each answer (timedSink).
		srv := &http.Server{Handler: &timedSink{sink: receiver.NewWithOptions(receiver.Options{Secret: secret})}, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		addr, stop = ln.Addr().String(), func() error { return srv.Close() }
	case "serve":
		rate, err := strconv.ParseFloat(os.Getenv(childRateEnv), 64)
		if err != nil {
			return fmt.Errorf("%s: %w", childRateEnv, err)
		}
		if rate == 0 {
			rate = math.Inf(1)
		}
		// replayd serve's defaults but for the listener, the private sink and the API's per-app
		// request limit (every sample is a request).
		srv, err := server.New(ctx, server.Config{
			DataDir: os.Getenv(childDataEnv), Listen: "127.0.0.1:0", AllowPrivateWebhooks: true,
			WebhookRate: rate, RateLimit: math.MaxInt32, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			return err
		}
		if err := srv.Start(ctx); err != nil {
			return err
		}
		addr, stop = srv.Addr(), func() error { return srv.Stop(ctx) }
	default:
		return fmt.Errorf("no child role %q", role)
	}
	fmt.Println(addr)
	io.Copy(io.Discard, os.Stdin) // until the parent closes it
	return stop()
}

// timedSink is a receiver.Sink that also keeps the time of every 200 it gave a delivery (events
// and status events, in the order answered), served as JSON Unix nanoseconds on
// GET /_bench/times?from=N (those from the N-th on; GET /_bench/count: how many). The parent takes a job's from the count
// before it: the sink itself is not timed by anything it would not do anyway.
type timedSink struct {
	sink *receiver.Sink
	mu   sync.Mutex
	at   []int64
}

func (t *timedSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_bench/count" {
		t.mu.Lock()
		n := len(t.at)
		t.mu.Unlock()
		writeJSONAnswer(w, n)
		return
	}
	if r.URL.Path == "/_bench/times" {
		from, _ := strconv.Atoi(r.URL.Query().Get("from"))
		t.mu.Lock()
		at := append([]int64(nil), t.at[min(max(from, 0), len(t.at)):]...)
		t.mu.Unlock()
		writeJSONAnswer(w, at)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	t.sink.ServeHTTP(sw, r)
	if sw.code == http.StatusOK && r.Method == http.MethodPost && !strings.HasPrefix(r.URL.Path, "/_sink/") {
		now := time.Now().UnixNano()
		t.mu.Lock()
		t.at = append(t.at, now)
		t.mu.Unlock()
	}
}

func writeJSONAnswer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// statusWriter remembers the status written; Hijack passes through (the sink's reset fault).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("not hijackable")
	}
	return hj.Hijack()
}

// child is a re-executed bench binary in a role.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string // what it printed: the address it listens on
}

// startChild starts this binary as role with env (KEY=value) added, and waits for its address.
func startChild(ctx context.Context, role string, env ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), childEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: stdin}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case c.addr = <-line:
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	case <-time.After(time.Minute):
		c.stop()
		return nil, fmt.Errorf("bench %s: no address within a minute", role)
	}
	if c.addr == "" {
		err := c.stop()
		return nil, fmt.Errorf("bench %s exited before listening: %v", role, err)
	}
	return c, nil
}

// stop closes the child's stdin, which ends it, and waits for it (killing it after 30 s).
func (c *child) stop() error {
	c.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		return <-done
	}
}

// peakRSS is the child's VmHWM (peak resident set) in bytes, from /proc.
func (c *child) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// cpu is the CPU time (user and system) the child has used so far (procCPU).
func (c *child) cpu() (time.Duration, error) { return procCPU(c.cmd.Process.Pid) }

// procCPU is the CPU time (user and system) process pid has used so far, from /proc (in the
// kernel's clock ticks, 10 ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid …: comm may hold spaces, so the fields are counted after its ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const tick = 10 * time.Millisecond // USER_HZ, 100 on Linux
	return time.Duration(utime+stime) * tick, nil
}

// cpuSample measures the CPU time this process and another one spend over a sample.
type cpuSample struct {
	pid           int // the other process; 0: none
	self0, other0 time.Duration
}

// startCPU starts a sample of this process's CPU time and process pid's (0: this one's only).
func startCPU(pid int) (cpuSample, error) {
	s := cpuSample{pid: pid}
	if pid != 0 {
		var err error
		if s.other0, err = procCPU(pid); err != nil {
			return s, err
		}
	}
	s.self0 = selfCPU()
	return s, nil
}

// stop returns the CPU time this process and the other one used since startCPU.
func (s cpuSample) stop() (self, other time.Duration, err error) {
	self = selfCPU() - s.self0
	if s.pid != 0 {
		now, err := procCPU(s.pid)
		if err != nil {
			return self, 0, err
		}
		other = now - s.other0
	}
	return self, other, nil
}

// selfCPU is the CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// remoteSink is a sink child seen from the parent.
type remoteSink struct {
	*child
	base string // http://addr
}

func startSink(ctx context.Context, secret []byte, profile string) (*remoteSink, error) {
	env := []string{childSecretEnv + "=" + hex.EncodeToString(secret)}
	if profile != "" {
		env = append(env, childProfileEnv+"="+profile)
	}
	c, err := startChild(ctx, "sink", env...)
	if err != nil {
		return nil, err
	}
	return &remoteSink{child: c, base: "http://" + c.addr}, nil
}

// setLatency makes the sink answer every delivery after latency.
func (s *remoteSink) setLatency(ctx context.Context, latency time.Duration) error {
	return callJSON(ctx, http.MethodPost, s.base+"/_sink/faults", receiver.Faults{Latency: latency}, nil)
}

// count is how many answers the sink has timed so far.
func (s *remoteSink) count(ctx context.Context) (int, error) {
	var n int
	err := callJSON(ctx, http.MethodGet, s.base+"/_bench/count", nil, &n)
	return n, err
}

// times are the answer times from the from-th on, once there are at least want of them: the
// sink notes a time after its handler returns, so the job's status can be seen (waitJob) a
// moment before the status event's answer is noted.
func (s *remoteSink) times(ctx context.Context, from, want int) ([]time.Time, error) {
	var at []int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if err := callJSON(ctx, http.MethodGet, s.base+"/_bench/times?from="+strconv.Itoa(from), nil, &at); err != nil {
			return nil, err
		}
		if len(at) >= want || time.Now().After(deadline) {
			break
		}
	}
	ts := make([]time.Time, len(at))
	for i, n := range at {
		ts[i] = time.Unix(0, n)
	}
	return ts, nil
}

// waitJob waits for jobID's status event at the sink and returns what the sink saw of the job.
func (s *remoteSink) waitJob(ctx context.Context, jobID string) (receiver.JobStats, error) {
	for {
		var js receiver.JobStats
		err := callJSON(ctx, http.MethodGet, s.base+"/_sink/jobs/"+jobID+"?wait=30s", nil, &js)
		var nf *notFound
		if errors.As(err, &nf) {
			continue // not yet: wait again
		}
		return js, err
	}
}

// badSignatures counts the POSTs the sink refused for their signature.
func (s *remoteSink) badSignatures(ctx context.Context) (int64, error) {
	var st receiver.Stats
	err := callJSON(ctx, http.MethodGet, s.base+"/_sink/stats", nil, &st)
	return st.BadSignatures, err
}

type notFound struct{ body string }

func (e *notFound) Error() string { return "404: " + e.body }

// callJSON sends in (if not nil) as JSON and decodes a 2xx answer into out (if not nil).
func callJSON(ctx context.Context, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return &notFound{body: string(b)}
	case resp.StatusCode >= 300:
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, b)
	case out == nil:
		return nil
	}
	return json.Unmarshal(b, out)
}

// startCPUProfile writes this process's CPU profile to path until stop is called (the bench's
// own and each child's, for --cpuprofile).
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
