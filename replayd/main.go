// Command replayd is the replay service daemon and its operator tools: it serves the replay API and
// runs the workers, and its subcommands inspect segments, rebuild and verify the index.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries an exit code out of a subcommand whose message has already been printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	// The one signal context of every command: SIGINT or SIGTERM cancels cmd.Context().
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand()
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			stop()
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "replayd:", err)
		stop()
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "replayd",
		Short:         "Replay service for webhook events stored in Kafka's delivery_log",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Data directories, stores and logs are the user's alone (0700/0600).
		PersistentPreRun: func(*cobra.Command, []string) { privateFiles() },
	}
	root.AddCommand(newSegmentCommand())
	root.AddCommand(newMigrateCommand())
	root.AddCommand(newAppsCommand())
	root.AddCommand(newIndexCommand())
	root.AddCommand(newServeCommand())
	root.AddCommand(newDemoCommand())
	return root
}
