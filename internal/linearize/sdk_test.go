package linearize

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/smr"
)

func TestClassifyWrite(t *testing.T) {
	rejected := &client.APIError{Status: 403, Code: smr.CodePermissionDenied}
	tests := []struct {
		name string
		err  error
		want Outcome
	}{
		{"success", nil, OutcomeOK},
		{"outcome unknown", &client.RetryError{Err: client.ErrOutcomeUnknown, Last: errors.New("timeout")}, OutcomeUnknown},
		{"unknown wrapping a rejection", &client.RetryError{Err: client.ErrOutcomeUnknown, Last: rejected}, OutcomeUnknown},
		{"unavailable", &client.RetryError{Err: client.ErrUnavailable, Last: errors.New("dial")}, OutcomeFailed},
		{"wrapped unavailable", fmt.Errorf("submit: %w", &client.RetryError{Err: client.ErrUnavailable}), OutcomeFailed},
		{"definitive rejection", rejected, OutcomeFailed},
		{"transport error", errors.New("read tcp: connection reset by peer"), OutcomeUnknown},
		{"context ended", fmt.Errorf("submit: %w", context.DeadlineExceeded), OutcomeUnknown},
	}
	for _, tt := range tests {
		if got := classifyWrite(tt.err); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestOrderedNotFound(t *testing.T) {
	r := smr.Result{Index: 7, Code: smr.CodeNotFound}
	ordered := &client.APIError{Status: 404, Code: smr.CodeNotFound, Result: &r}
	if !orderedNotFound(ordered) {
		t.Error("an ordered not_found rejection is not recognized")
	}
	if orderedNotFound(&client.APIError{Status: 404, Code: smr.CodeNotFound}) {
		t.Error("a not_found without a result counts as ordered")
	}
	if orderedNotFound(&client.RetryError{Err: client.ErrOutcomeUnknown, Last: ordered}) {
		t.Error("a not_found inside an unknown outcome counts as definitive")
	}
}
