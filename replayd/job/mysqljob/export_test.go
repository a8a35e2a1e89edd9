package mysqljob

// SetCreateReadHook makes d call f in Create between the INSERT and the read of the new row, f's
// error standing for that read's. Call it before d is used.
func SetCreateReadHook(d *Driver, f func() error) { d.testHookCreateRead = f }

// LeaseStatement is the UPDATE that Lease runs, with or without the per-app cap, for EXPLAIN.
func LeaseStatement(perApp bool) string {
	if perApp {
		return leaseStatementPerApp
	}
	return leaseStatement
}
