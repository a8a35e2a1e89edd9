package mysqldb

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// IsUnavailable reports whether err means the database could not answer, rather than a bug or
// an answer: a broken or refused connection, a closed pool, server errors that mean "busy" (too
// many connections, shutdown, interrupted or timed-out statements), and deadlocks or lock waits
// that outlasted Retry. The stores report these as their ErrUnavailable, which the API answers
// with 503/67. Context errors are the caller's, not the database's: they are not included.
func IsUnavailable(err error) bool {
	var (
		ne net.Error
		me *mysql.MySQLError
	)
	switch {
	case err == nil:
		return false
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone), errors.Is(err, mysql.ErrInvalidConn),
		errors.As(err, &ne), IsRetryable(err):
		return true
	case errors.As(err, &me):
		switch me.Number {
		case 1040, 1053, 1205, 1213, 1317, 3024, 1969:
			return true
		}
	}
	return false
}

// IsDuplicateKey reports whether err is the duplicate-key error (1062) on the named index.
func IsDuplicateKey(err error, index string) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062 && strings.Contains(me.Message, index)
}

// IsForeignKey reports whether err is 1452: a child row's parent does not exist.
func IsForeignKey(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1452
}
