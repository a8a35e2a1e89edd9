package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/replay/replay/replayd/app/mysqlapp"
	"github.com/replay/replay/replayd/job/mysqljob"
)

// newMigrateCommand is `replayd migrate --mysql-dsn DSN`: apply the job store's pending schema
// migrations (the ones embedded in this binary) and exit. `replayd serve` applies them on start
// too; this is for deployments that migrate as a separate step.
func newMigrateCommand() *cobra.Command {
	var dsn string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the job and app stores' pending MySQL schema migrations",
		Long: `Apply the schema migrations of the job store (recorded in schema_migrations) and of the app
store (recorded in app_schema_migrations) that the database does not list yet, in version order,
and print what was applied. Safe to run from several hosts at once (a GET_LOCK serializes them).
DSN is a go-sql-driver/mysql DSN naming the database, e.g. replay:secret@tcp(db:3306)/replay.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dsn == "" {
				return errors.New("migrate: --mysql-dsn is required")
			}
			ctx := cmd.Context() // canceled by SIGINT or SIGTERM (main)
			for _, store := range []struct {
				name    string
				migrate func(context.Context, string) ([]int64, error)
			}{{"job store", mysqljob.Migrate}, {"app store", mysqlapp.Migrate}} {
				applied, err := store.migrate(ctx, dsn)
				for _, v := range applied {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: applied migration %04d\n", store.name, v)
				}
				if err != nil {
					return err
				}
				if len(applied) == 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: schema is up to date\n", store.name)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dsn, "mysql-dsn", "", "MySQL/MariaDB DSN naming the stores' database (required)")
	return cmd
}
