package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/app/mysqlapp"
)

// newAppsCommand is `replayd apps create|list`: manage the apps that may call the replay API, in
// the embedded app store (<data>/apps) or, with --mysql-dsn, in MySQL.
func newAppsCommand() *cobra.Command {
	var dataDir, dsn string
	cmd := &cobra.Command{
		Use:   "apps",
		Short: "Create and list the apps that may call the replay API",
		Long: `Manage the replay API's apps. Without --mysql-dsn the embedded app store under
<data>/apps is used (the one "replayd serve --data <data>" reads; it cannot be opened while a
server holds it); with --mysql-dsn the MySQL/MariaDB app store in that database.`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data", "./data", "data directory of the embedded stores (the app store is <data>/apps)")
	cmd.PersistentFlags().StringVar(&dsn, "mysql-dsn", "", "MySQL/MariaDB DSN naming the app store's database (instead of the embedded store)")

	open := func(ctx context.Context) (app.Driver, error) {
		if dsn != "" {
			return mysqlapp.Open(ctx, mysqlapp.Options{DSN: dsn, MaxOpenConns: 2})
		}
		dir := filepath.Join(dataDir, "apps")
		d, err := embeddedapp.Open(embeddedapp.Options{Dir: dir})
		if err != nil {
			return nil, fmt.Errorf("%w (is a replayd server using --data %s?)", err, dataDir)
		}
		return d, nil
	}
	withStore := func(cmd *cobra.Command, fn func(ctx context.Context, d app.Driver) error) error {
		ctx := cmd.Context() // canceled by SIGINT or SIGTERM (main)
		d, err := open(ctx)
		if err != nil {
			return err
		}
		err = fn(ctx, d)
		return errors.Join(err, d.Close())
	}

	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an app and print its id, bearer token and secret",
		Long: `Create an app and print, as one JSON object, its id, name, bearer token and secret:

  {"id":"…","name":"…","token":"…","secret":"…"}

The token (Authorization: Bearer <token>) is shown only now: the store keeps only its SHA-256.
The secret is the HMAC-SHA256 key of the CRC challenge's response_token and of every delivery's
x-twitter-webhooks-signature: the key is the bytes of the secret string exactly as printed
(base64url of 32 random bytes), not its decoding.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, d app.Driver) error {
				r, err := d.CreateApp(ctx, app.CreateAppParams{Name: args[0]})
				if err != nil {
					return err
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(struct {
					ID     string `json:"id"`
					Name   string `json:"name"`
					Token  string `json:"token"`
					Secret string `json:"secret"`
				}{fmt.Sprint(r.App.ID), r.App.Name, r.Token, string(r.App.Secret)})
			})
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the apps, one JSON object per line (id, name, created_at; no secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, d app.Driver) error {
				apps, err := d.ListApps(ctx, app.ListAppsParams{})
				if err != nil {
					return err
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				for _, a := range apps {
					if err := enc.Encode(struct {
						ID        string `json:"id"`
						Name      string `json:"name"`
						CreatedAt string `json:"created_at"`
					}{fmt.Sprint(a.ID), a.Name, a.CreatedAt.UTC().Format(time.RFC3339)}); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.AddCommand(create, list)
	return cmd
}
