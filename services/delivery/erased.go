package delivery

import (
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// erasedDecision is the policy for a delivery of a respondent erased after it was created (the
// registry's view of the `erasures` topic, Registry.Erased): it is not sent, not retried, not
// dead-lettered, whatever its webhook's state, and its attempt is recorded with the outcome
// ERASED and without the body (erasedAttempt), so the log shows that it was stopped, and why,
// without keeping what the erasure removed.
func erasedDecision(in input) decision {
	return decision{Outcome: &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_ERASED,
		Disposition: pb.Disposition_DISPOSITION_ERASED, AtMs: in.Now.UnixMilli(),
		Error: "not sent: the respondent was erased (" + in.ErasedBy + ")"}}
}

// erasedAttempt removes from an erased delivery's attempt record what the erasure removed: the
// body. The URL, ids and outcome stay.
func erasedAttempt(a *pb.Attempt) {
	if a.GetOutcome().GetDisposition() == pb.Disposition_DISPOSITION_ERASED {
		a.RequestBody = nil
	}
}
