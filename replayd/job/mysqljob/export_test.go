package mysqljob

import "github.com/replay/replay/replayd/job"

// SetCreateReadHook makes d call f in Create between the INSERT and the read of the new row, f's
// error standing for that read's. Call it before d is used.
func SetCreateReadHook(d *Driver, f func() error) { d.testHookCreateRead = f }

// SetCandidatesHook makes d call f after each read of the lease queue's head, with the ids read.
// Call it before d is used.
func SetCandidatesHook(d *Driver, f func(ids []int64)) { d.testHookCandidates = f }

// ListQuery is the SELECT List runs for p, for EXPLAIN.
func ListQuery(p job.ListParams) (string, []any) { return listQuery(p) }

// CountStatements are the queries Count runs for all apps besides the table's count.
var CountStatements = []string{countActive, countRare}

// LeaseStatement is one of the statements Lease runs, with or without the per-app cap, for
// EXPLAIN: "candidates" (the read of the head), "by-id" (the take of one candidate) or "range"
// (the fallback).
func LeaseStatement(which string, perApp bool) string {
	all := map[string][2]string{
		"candidates": {leaseCandidatesStatement, leaseCandidatesPerApp},
		"by-id":      {leaseByIDStatement, leaseByIDStatementPerApp},
		"range":      {leaseRangeStatement, leaseRangeStatementPerApp},
	}
	if perApp {
		return all[which][1]
	}
	return all[which][0]
}
