package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The console's operator token comes from --operator-token, --operator-token-file (so that it is
// not on the command line, which every user of the machine can read) or the environment, in that
// order; both flags at once, an empty or missing file are errors naming the flag.
func TestOperatorToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  op-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REPLAYD_OPERATOR_TOKEN", "from-env")
	for _, tc := range []struct {
		args       []string
		want, fail string
	}{
		{nil, "from-env", ""},
		{[]string{"--operator-token", "on-the-line"}, "on-the-line", ""},
		{[]string{"--operator-token-file", file}, "op-secret", ""},
		{[]string{"--operator-token", "x", "--operator-token-file", file}, "", "both given"},
		{[]string{"--operator-token-file", empty}, "", "holds no token"},
		{[]string{"--operator-token-file", filepath.Join(dir, "missing")}, "", "--operator-token-file: open"},
	} {
		cmd := newServeCommand()
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		f, _ := cmd.Flags().GetString("operator-token-file")
		got, err := operatorToken(cmd, f)
		switch {
		case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)):
			t.Errorf("%v: got %q, %v; want an error saying %q", tc.args, got, err, tc.fail)
		case tc.fail == "" && (err != nil || got != tc.want):
			t.Errorf("%v: got %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
}
