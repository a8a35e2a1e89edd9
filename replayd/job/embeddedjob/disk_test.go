package embeddedjob_test

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/replay/replay/index/diskreserve"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
)

// Below the disk reserve: a poll for a job finds none without needing the disk, a new job and a
// lease of a due one answer ErrUnavailable (503/67 at the API), reads go on; with space back
// everything works.
func TestLowDisk(t *testing.T) {
	fs := diskreserve.NewFreeFS(vfs.Default, 1<<30)
	d, err := embeddedjob.Open(embeddedjob.Options{Dir: t.TempDir(), FS: fs, DiskReserve: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := t.Context()
	fs.Free.Store(1 << 20)
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "w"}); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("lease with no job due on a low disk: %v, want ErrNoJob", err)
	}
	if _, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 2, FromMs: 1, ToMs: 2}); !errors.Is(err, job.ErrUnavailable) || !errors.Is(err, diskreserve.ErrLowDisk) {
		t.Fatalf("create on a low disk: %v", err)
	}
	fs.Free.Store(1 << 30)
	j, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 2, FromMs: 1, ToMs: 2})
	if err != nil {
		t.Fatal(err)
	}
	fs.Free.Store(1 << 20)
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "w"}); !errors.Is(err, job.ErrUnavailable) || !errors.Is(err, diskreserve.ErrLowDisk) {
		t.Fatalf("lease of a due job on a low disk: %v", err)
	}
	if got, err := d.Get(ctx, job.GetParams{ID: j.ID}); err != nil || got.State != job.StateOpen {
		t.Fatalf("get on a low disk: %+v, %v", got, err)
	}
	fs.Free.Store(1 << 30)
	if l, err := d.Lease(ctx, job.LeaseParams{Owner: "w"}); err != nil || l.ID != j.ID {
		t.Fatalf("lease with space back: %+v, %v", l, err)
	}
}
