package delivery

import (
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkDeliver: one signed delivery of a 1 KB body to a local server that answers 200 at
// once, 64 in parallel; the allocations counted are the client's and the server's (one process).
//
//	go test -run '^$' -bench Deliver -benchmem ./replayd/delivery/
func BenchmarkDeliver(b *testing.B) {
	o := testOptions(newFakeClock())
	o.RateLimit = math.Inf(1)
	o.Concurrency = 64
	c, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	tg := target(srv.URL + "/hook")
	b.SetParallelism(32) // × GOMAXPROCS goroutines
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Deliver(b.Context(), tg, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
