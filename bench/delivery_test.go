package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/worker"
)

// BenchmarkDelivery: events/s of one replay job (a replayd of 1 worker on the embedded defaults:
// log, index, job and app stores, its delivery.Client and adaptive window) to a sink 0, 20 and
// 100 ms away (a process of its own), with the default per-webhook limit and with it lifted, vs
// a bare http.Client POSTing the same signed bodies from worker.DefaultMaxInFlight goroutines
// (delivery.go). One op
// is one whole job of 4000 events.
//
//	go test -run '^$' -bench Delivery -benchtime 3x ./bench/
func BenchmarkDelivery(b *testing.B) {
	ctx := context.Background()
	const n = 4000
	def, err := newDeliveryEnv(ctx, filepath.Join(b.TempDir(), "default"), n, delivery.DefaultRateLimit, "")
	if err != nil {
		b.Fatal(err)
	}
	defer def.close()
	raised, err := newDeliveryEnv(ctx, filepath.Join(b.TempDir(), "raised"), n, math.Inf(1), "")
	if err != nil {
		b.Fatal(err)
	}
	defer raised.close()
	sigs := make([]string, len(raised.bodies))
	for i, body := range raised.bodies {
		sigs[i] = delivery.Sign(raised.secret, body)
	}
	for _, lat := range deliveryLatencies {
		for _, v := range []struct {
			name string
			env  *deliveryEnv
		}{{"default", def}, {"raised", raised}} {
			b.Run(fmt.Sprintf("latency=%v/%s", lat, v.name), func(b *testing.B) {
				var events int64
				for b.Loop() {
					r, err := v.env.replayJob(ctx, lat)
					if err != nil {
						b.Fatal(err)
					}
					events += int64(r.events)
				}
				b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
			})
		}
		b.Run(fmt.Sprintf("latency=%v/bare-client", lat), func(b *testing.B) {
			for b.Loop() {
				if _, err := bareClient(ctx, raised.sink, raised.bodies, sigs, lat, worker.DefaultMaxInFlight); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(raised.bodies)*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
