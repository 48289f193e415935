package masking

import (
	"slices"
	"strings"
)

// RespondentHashes are the keyed hashes (HashValue under the project's key) that name one
// respondent without their identifiers: of the user id, the anonymous id and the e-mail address
// lower-cased, those that are not blank, without duplicates. Fan-out puts them on every delivery
// and an erasure publishes them, so a delivery worker can tell an erased respondent's delivery
// without opening its body or learning who it is. nil without a key.
func RespondentHashes(key []byte, userID, anonymousID, email string) []string {
	if len(key) == 0 {
		return nil
	}
	var out []string
	for _, v := range []string{userID, anonymousID, strings.ToLower(email)} {
		if strings.TrimSpace(v) != "" {
			out = append(out, HashValue(key, v))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
