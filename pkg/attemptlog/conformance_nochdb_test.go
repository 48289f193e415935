//go:build !chdb

package attemptlog_test

import "testing"

// TestConformanceOnACurrentEngine says where the other half of the suite is: libchdb is loaded only
// in a build with -tags chdb and CHDB_LIB_PATH set, which `make test` does.
func TestConformanceOnACurrentEngine(t *testing.T) {
	t.Skip("the current engine (libchdb) runs only with -tags chdb and CHDB_LIB_PATH: use make test")
}
