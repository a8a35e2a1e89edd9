// Command loadgen puts realistic delivery_log traffic into the replay system, runs a verifying
// webhook sink, fires replay requests and verifies exactly what was delivered.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	// The one signal context of every command: SIGINT or SIGTERM cancels cmd.Context().
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		if _, reported := err.(exitError); !reported {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitError carries an exit code without printing anything more (the command already reported).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func exitCode(err error) int {
	if e, ok := err.(exitError); ok {
		return e.code
	}
	return 1
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "loadgen",
		Short: "Produce delivery_log traffic, receive and verify replays, measure the replay API",
		Long: `loadgen is the performance engineers' tool for the replay service:

  produce  write realistic delivery_log traffic (embedded log or Kafka) and a manifest of it
  sink     a webhook receiver: CRC challenge, signature checks, a record of every delivery, faults
  replay   submit replay requests through the HTTP API and measure them at the sink
  verify   prove from the manifest and the sink's record that a replay delivered exactly the
           unique events of a webhook and window`,
		SilenceUsage:  true,
		SilenceErrors: true, // main prints them, except an exitError (already reported)
		// Before any command writes a file (private_unix.go).
		PersistentPreRun: func(*cobra.Command, []string) { privateFiles() },
	}
	root.AddCommand(newProduceCommand(), newSinkCommand(), newReplayCommand(), newVerifyCommand())
	return root
}
