package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/app/mysqlapp"
)

// newAppsCommand is `replayd apps create|list|rotate-secret|set`: manage the apps that may call the replay API, in
// the embedded app store (<data>/apps) or, with --mysql-dsn, in MySQL.
func newAppsCommand() *cobra.Command {
	var dataDir, dsn, keyFile string
	cmd := &cobra.Command{
		Use:   "apps",
		Short: "Create, list and change the apps that may call the replay API",
		Long: `Manage the replay API's apps. Without --mysql-dsn the embedded app store under
<data>/apps is used (the one "replayd serve --data <data>" reads; it cannot be opened while a
server holds it); with --mysql-dsn the MySQL/MariaDB app store in that database.`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data", "./data", "data directory of the embedded stores (the app store is <data>/apps)")
	cmd.PersistentFlags().StringVar(&dsn, "mysql-dsn", "", "MySQL/MariaDB DSN naming the app store's database (instead of the embedded store)")
	cmd.PersistentFlags().StringVar(&keyFile, "secret-key-file", "", secretKeyFlagHelp)

	open := func(ctx context.Context) (app.Driver, error) {
		secrets, err := app.LoadSecretKey(keyFile)
		if err != nil {
			return nil, err
		}
		if dsn != "" {
			return mysqlapp.Open(ctx, mysqlapp.Options{DSN: dsn, MaxOpenConns: 2, Secrets: secrets})
		}
		dir := filepath.Join(dataDir, "apps")
		d, err := embeddedapp.Open(embeddedapp.Options{Dir: dir, Secrets: secrets})
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

	var standard bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an app and print its id, bearer token and secret",
		Long: `Create an app and print, as one JSON object, its id, name, bearer token and secret:

  {"id":"…","name":"…","token":"…","secret":"…","signing_secret":"whsec_…","standard_webhooks":false}

The token (Authorization: Bearer <token>) is shown only now: the store keeps only its SHA-256.
The secret is the HMAC-SHA256 key of the CRC challenge's response_token and of every delivery's
x-twitter-webhooks-signature: the key is the bytes of the secret string exactly as printed
(base64url of 32 random bytes), not its decoding. signing_secret is the same key in the
Standard Webhooks form (whsec_ + base64 of those bytes), for the webhook-signature header that
--standard-webhooks (or 'replayd apps set ID --standard-webhooks') adds to every delivery.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, d app.Driver) error {
				r, err := d.CreateApp(ctx, app.CreateAppParams{Name: args[0], StandardWebhooks: standard})
				if err != nil {
					return err
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(struct {
					ID               string `json:"id"`
					Name             string `json:"name"`
					Token            string `json:"token"`
					Secret           string `json:"secret"`
					SigningSecret    string `json:"signing_secret"`
					StandardWebhooks bool   `json:"standard_webhooks"`
				}{fmt.Sprint(r.App.ID), r.App.Name, r.Token, string(r.App.Secret), app.SigningSecret(r.App.Secret), r.App.StandardWebhooks})
			})
		},
	}
	create.Flags().BoolVar(&standard, "standard-webhooks", false, "sign the app's deliveries with the Standard Webhooks headers too (webhook-id, webhook-timestamp, webhook-signature)")

	var overlap time.Duration
	rotate := &cobra.Command{
		Use:   "rotate-secret APP_ID",
		Short: "Give an app a new secret, the old one still signing deliveries for --overlap",
		Long: `Give an app a new secret and print it, as one JSON object:

  {"id":"…","secret":"…","signing_secret":"whsec_…","previous_secret_until":"…"}

For --overlap (default 24h; 0 drops the old secret at once) every delivery is signed with both:
x-twitter-webhooks-signature with the new secret and x-twitter-webhooks-signature-previous
with the old one; with Standard Webhooks, webhook-signature lists both v1 signatures,
space-separated (the spec's way). The CRC challenge accepts an answer made with either. So a
webhook may switch to the new secret at any moment within the overlap, provided it checks
either Twitter header (or the Standard Webhooks one); a webhook that reads only
x-twitter-webhooks-signature must switch when the secret is rotated. Running replays take the
new secrets at their next heartbeat (a third of --lease-timeout).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseAppID(args[0])
			if err != nil {
				return err
			}
			return withStore(cmd, func(ctx context.Context, d app.Driver) error {
				a, err := d.RotateSecret(ctx, app.RotateSecretParams{ID: id, Overlap: overlap})
				if errors.Is(err, app.ErrNotFound) {
					return fmt.Errorf("rotate-secret: no app %d ('replayd apps list' lists them)", id)
				}
				if err != nil {
					return err
				}
				until := ""
				if len(a.PreviousSecret) > 0 {
					until = a.PreviousSecretUntil.UTC().Format(time.RFC3339)
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(struct {
					ID                  string `json:"id"`
					Secret              string `json:"secret"`
					SigningSecret       string `json:"signing_secret"`
					PreviousSecretUntil string `json:"previous_secret_until,omitempty"`
				}{fmt.Sprint(a.ID), string(a.Secret), app.SigningSecret(a.Secret), until})
			})
		},
	}
	rotate.Flags().DurationVar(&overlap, "overlap", 24*time.Hour, fmt.Sprintf("how long the old secret still signs deliveries beside the new one and answers the CRC challenge (0 to %v)", app.MaxOverlap))

	var setStandard bool
	set := &cobra.Command{
		Use:   "set APP_ID",
		Short: "Change an app's signing options (--standard-webhooks)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseAppID(args[0])
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("standard-webhooks") {
				return errors.New("set: nothing to change: give --standard-webhooks=true or --standard-webhooks=false")
			}
			return withStore(cmd, func(ctx context.Context, d app.Driver) error {
				a, err := d.SetStandardWebhooks(ctx, app.SetStandardWebhooksParams{ID: id, Enabled: setStandard})
				if errors.Is(err, app.ErrNotFound) {
					return fmt.Errorf("set: no app %d ('replayd apps list' lists them)", id)
				}
				if err != nil {
					return err
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(struct {
					ID               string `json:"id"`
					StandardWebhooks bool   `json:"standard_webhooks"`
				}{fmt.Sprint(a.ID), a.StandardWebhooks})
			})
		},
	}
	set.Flags().BoolVar(&setStandard, "standard-webhooks", false, "sign the app's deliveries with the Standard Webhooks headers too (true or false)")
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
	cmd.AddCommand(create, list, rotate, set)
	return cmd
}

// parseAppID reads an app id argument.
func parseAppID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("app id %q: want the decimal id 'replayd apps create' printed", s)
	}
	return id, nil
}

// secretKeyFlagHelp is --secret-key-file's help, the same in serve and apps.
const secretKeyFlagHelp = "file holding the key app secrets are sealed with at rest (base64 of 32 bytes: head -c 32 /dev/urandom | base64); default: $" + app.SecretKeyEnv + " if set, else secrets are stored unsealed (the embedded demo's default)"
