package receiver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server serves a Sink over HTTP on a TCP address and flushes its record every FlushEvery.
//
// A service: Listen starts it; Stop shuts it down (requests still held after ctx, such as
// timeout faults, are cut) and flushes the record. Stop is idempotent.
type Server struct {
	sink *Sink
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	wg   sync.WaitGroup

	stopOnce sync.Once
	stopErr  error
}

// Listen serves sk on addr ("127.0.0.1:0": any free port), flushing its record every
// flushEvery (never if 0).
func Listen(addr string, sk *Sink, flushEvery time.Duration) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{sink: sk, ln: ln, srv: &http.Server{Handler: sk, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.srv.Serve(ln)
	}()
	if flushEvery > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			t := time.NewTicker(flushEvery)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					sk.Flush()
				case <-s.done:
					return
				}
			}
		}()
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stop shuts the server down, waiting for requests in flight until ctx ends, and flushes the
// record. Later calls return the first one's result.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		close(s.done)
		err := s.srv.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			err = s.srv.Close() // held (timeout fault) requests
		}
		s.wg.Wait()
		s.stopErr = errors.Join(err, s.sink.Flush())
	})
	return s.stopErr
}
