package wire

import (
	"encoding/json"
	"testing"

	"github.com/tandem-consensus/tandem/smr"
)

// The JSON spellings are the API's contract (docs/api.md); a renamed field
// or tag would break every client and server of the other version.
func TestJSONSpellings(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{ErrorBody{Code: smr.CodeNotFound, Message: "m"}, `{"code":"not_found","message":"m"}`},
		{ErrorBody{Code: CodeNoLeader, Message: "m", LeaderID: "n2", Result: &smr.Result{Index: 3, Seq: 4, Code: smr.CodeLastAdmin}}, ""},
		{QueryResponse{Index: 7, Value: json.RawMessage(`{"a":1}`)}, `{"index":7,"value":{"a":1}}`},
		{MembersResponse{Members: []Member{{ID: "n1", Address: "h:1", Voter: true, Leader: true}}},
			`{"members":[{"id":"n1","address":"h:1","voter":true,"leader":true}]}`},
		{TransferLeaderRequest{ID: "n3"}, `{"id":"n3"}`},
		{AddMemberRequest{ID: "n4", Address: "h:4"}, `{"id":"n4","address":"h:4"}`},
	}
	for i, tc := range cases {
		b, err := json.Marshal(tc.v)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if tc.want != "" && string(b) != tc.want {
			t.Errorf("case %d: %s, want %s", i, b, tc.want)
		}
	}

	// Fields the server sets are read back by the client unchanged.
	in := ErrorBody{Code: CodeNoLeader, Message: "m", LeaderID: "n2", Result: &smr.Result{Index: 3, Seq: 4, Code: smr.CodeLastAdmin}}
	b, _ := json.Marshal(in)
	var out ErrorBody
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Code != in.Code || out.LeaderID != "n2" || out.Result == nil || out.Result.Index != 3 || out.Result.Code != smr.CodeLastAdmin {
		t.Errorf("round trip of %s = %+v", b, out)
	}
	var sr SubmitResponse
	if err := json.Unmarshal([]byte(`{"result":{"index":42,"seq":7,"duplicate":true}}`), &sr); err != nil || sr.Result.Index != 42 || sr.Result.Seq != 7 || !sr.Result.Duplicate {
		t.Errorf("SubmitResponse = %+v, %v", sr, err)
	}
}

func TestCodesDoNotCollideWithStateMachineCodes(t *testing.T) {
	sm := []smr.Code{smr.CodeMalformed, smr.CodeUnknownCommand, smr.CodeBadSignature, smr.CodeUnknownClient,
		smr.CodePermissionDenied, smr.CodeSeqTooOld, smr.CodeSeqConflict, smr.CodeSeqTooFar, smr.CodeNotFound,
		smr.CodeAlreadyExists, smr.CodeTooLarge, smr.CodeLastAdmin, smr.CodeNotInitialized, smr.CodeAlreadyInitialized}
	for _, c := range []smr.Code{CodeNoLeader, CodeOutcomeUnknown, CodeMethodNotAllowed, CodeInternal} {
		if c == smr.CodeOK {
			t.Errorf("API code %q is empty", c)
		}
		for _, s := range sm {
			if c == s {
				t.Errorf("API code %q is also a state machine code", c)
			}
		}
	}
}
