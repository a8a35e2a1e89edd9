package main

import (
	"errors"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/replay/replay/replayd/job/mysqljob"
)

// newMigrateCommand is `replayd migrate --mysql-dsn DSN`: apply the job store's pending schema
// migrations (the ones embedded in this binary) and exit. `replayd serve` applies them on start
// too; this is for deployments that migrate as a separate step.
func newMigrateCommand() *cobra.Command {
	var dsn string
	cmd := &cobra.Command{
		Use:   "migrate --mysql-dsn DSN",
		Short: "Apply the job store's pending MySQL schema migrations",
		Long: `Apply the job store's schema migrations that the database's schema_migrations table does
not list yet, in version order, and print what was applied. Safe to run from several hosts at once
(a GET_LOCK serializes them). DSN is a go-sql-driver/mysql DSN naming the database, e.g.
replay:secret@tcp(db:3306)/replay.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dsn == "" {
				return errors.New("migrate: --mysql-dsn is required")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			applied, err := mysqljob.Migrate(ctx, dsn)
			for _, v := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "applied migration %04d\n", v)
			}
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "schema is up to date")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dsn, "mysql-dsn", "", "MySQL/MariaDB DSN naming the job store's database (required)")
	return cmd
}
