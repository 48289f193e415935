package ids

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestNewIsPrefixedAndUnique(t *testing.T) {
	a, b := New("wh_"), New("wh_")
	require.Regexp(t, `^wh_[0-9a-f]{24}$`, a)
	require.NotEqual(t, a, b)
}

func TestUUIDsParse(t *testing.T) {
	u, err := uuid.Parse(UUID())
	require.NoError(t, err)
	require.Equal(t, uuid.Version(4), u.Version())

	n1, n2 := NameUUID(Namespace, "prj_1"), NameUUID(Namespace, "prj_1")
	require.Equal(t, n1, n2, "name-based UUIDs are stable")
	require.NotEqual(t, n1, NameUUID(Namespace, "prj_2"))
	v, err := uuid.Parse(n1)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(5), v.Version())
}
