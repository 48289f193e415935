package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestProjectDeliveryWeightIsValidatedBoundedAndShown(t *testing.T) {
	s := startStack(t)
	r := s.must(http.StatusCreated, "POST", "/v1/projects", adminToken, map[string]any{"name": "Acme"})
	id, key := r.str("id"), r.str("api_key")
	require.EqualValues(t, 1, r.body["delivery_weight"], "equal shares by default")
	path := "/v1/projects/" + id
	for _, bad := range []map[string]any{{}, {"delivery_weight": 0}, {"delivery_weight": 101}, {"delivery_weight": -3}, {"delivery_weight": 2.5}} {
		require.Equal(t, "delivery_weight", s.must(http.StatusBadRequest, "PATCH", path, adminToken, bad).errField(), "%v", bad)
	}
	s.must(http.StatusBadRequest, "PATCH", path, adminToken, map[string]any{"delivery_weight": 3, "name": "renamed"})
	s.must(http.StatusUnauthorized, "PATCH", path, key, map[string]any{"delivery_weight": 3})
	s.must(http.StatusNotFound, "PATCH", "/v1/projects/prj_nope", adminToken, map[string]any{"delivery_weight": 3})
	require.EqualValues(t, 3, s.must(http.StatusOK, "PATCH", path, adminToken, map[string]any{"delivery_weight": 3}).body["delivery_weight"])
	require.EqualValues(t, 3, s.must(http.StatusOK, "GET", path, adminToken, nil).body["delivery_weight"], "read your write")
}
