package main

import "github.com/spf13/cobra"

func newSegmentCommand() *cobra.Command {
	return &cobra.Command{Use: "segment", Short: "Inspect Kafka log segment files"}
}
