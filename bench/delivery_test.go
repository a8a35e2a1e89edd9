package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/replay/replay/replayd/delivery"
)

// BenchmarkDelivery: events/s of one replay job (a replayd of 1 worker on the embedded defaults:
// log, index, job and app stores, its delivery.Client) to a local sink, vs a bare http.Client POSTing the same
// signed bodies to the same kind of sink (delivery.go). One op is one whole job of 2000 events.
//
//	go test -run '^$' -bench Delivery -benchtime 5x ./bench/
func BenchmarkDelivery(b *testing.B) {
	ctx := context.Background()
	e, err := newDeliveryEnv(ctx, filepath.Join(b.TempDir(), "delivery"), 2000)
	if err != nil {
		b.Fatal(err)
	}
	defer e.close()
	b.Run("job", func(b *testing.B) {
		var events int64
		for b.Loop() {
			_, n, err := e.replayJob(ctx)
			if err != nil {
				b.Fatal(err)
			}
			events += n
		}
		b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("bare-client", func(b *testing.B) {
		sigs := make([]string, len(e.bodies))
		for i, body := range e.bodies {
			sigs[i] = delivery.Sign(e.secret, body)
		}
		for b.Loop() {
			if _, err := bareClient(ctx, e.secret, e.bodies, sigs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(e.bodies)*b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
