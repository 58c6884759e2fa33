package linearize

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

const ms = time.Millisecond

func put(c int, key, value string, call, ret time.Duration, found bool) Op {
	return Op{ClientID: c, Input: Input{Kind: KindPut, Key: key, Value: value}, Output: Output{Found: found},
		Outcome: OutcomeOK, Call: call * ms, Return: ret * ms}
}

func del(c int, key string, call, ret time.Duration, found bool) Op {
	return Op{ClientID: c, Input: Input{Kind: KindDelete, Key: key}, Output: Output{Found: found},
		Outcome: OutcomeOK, Call: call * ms, Return: ret * ms}
}

func get(c int, key string, call, ret time.Duration, value string, found bool) Op {
	return Op{ClientID: c, Input: Input{Kind: KindGet, Key: key}, Output: Output{Value: value, Found: found},
		Outcome: OutcomeOK, Call: call * ms, Return: ret * ms}
}

func with(op Op, o Outcome) Op {
	op.Outcome, op.Output = o, Output{}
	if o != OutcomeOK {
		op.Err = "injected"
	}
	return op
}

func TestCheckVerdicts(t *testing.T) {
	tests := []struct {
		name    string
		h       History
		illegal bool
	}{
		{"empty history", nil, false},
		{"sequential put, get, delete, get", History{
			put(0, "k", "a", 0, 10, false),
			get(1, "k", 20, 30, "a", true),
			del(0, "k", 40, 50, true),
			get(1, "k", 60, 70, "", false),
		}, false},
		{"concurrent put and get may see either value", History{
			put(0, "k", "a", 0, 10, false),
			put(0, "k", "b", 20, 40, true),
			get(1, "k", 25, 30, "b", true),
			get(2, "k", 26, 31, "a", true),
		}, false},
		{"keys are independent", History{
			put(0, "x", "1", 0, 10, false),
			put(1, "y", "2", 0, 10, false),
			get(2, "x", 20, 30, "1", true),
			get(2, "y", 40, 50, "2", true),
		}, false},
		{"stale read after an acknowledged write", History{
			put(0, "k", "a", 0, 10, false),
			put(0, "k", "b", 20, 30, true),
			get(1, "k", 40, 50, "a", true),
		}, true},
		{"read of a value never written", History{
			get(1, "k", 0, 10, "z", true),
		}, true},
		{"a put reporting a replaced value on an empty key", History{
			put(0, "k", "a", 0, 10, true),
		}, true},
		{"a delete of a missing key that reports it found", History{
			del(0, "k", 0, 10, true),
		}, true},
		{"a delete ordered on a missing key (not_found) is legal", History{
			del(0, "k", 0, 10, false),
			get(1, "k", 20, 30, "", false),
		}, false},
		{"a read sees an unknown write: legal only because it happened", History{
			put(0, "k", "a", 0, 10, false),
			with(put(0, "k", "b", 15, 20, true), OutcomeUnknown),
			get(1, "k", 30, 40, "b", true),
		}, false},
		{"an unknown write may never happen", History{
			put(0, "k", "a", 0, 10, false),
			with(put(0, "k", "b", 15, 20, true), OutcomeUnknown),
			get(1, "k", 30, 40, "a", true),
			get(1, "k", 50, 60, "a", true),
		}, false},
		{"an unknown write may take effect long after its call returned", History{
			with(put(0, "k", "b", 0, 5, false), OutcomeUnknown),
			get(1, "k", 30, 40, "", false),
			get(1, "k", 50, 60, "b", true),
		}, false},
		{"an unknown write cannot take effect before its invocation", History{
			get(1, "k", 0, 10, "b", true),
			with(put(0, "k", "b", 15, 20, false), OutcomeUnknown),
		}, true},
		{"a failed write is dropped, so reading it is illegal", History{
			put(0, "k", "a", 0, 10, false),
			with(put(0, "k", "b", 15, 20, true), OutcomeFailed),
			get(1, "k", 30, 40, "b", true),
		}, true},
		{"an unknown delete explains a missing key", History{
			put(0, "k", "a", 0, 10, false),
			with(del(0, "k", 15, 20, true), OutcomeUnknown),
			get(1, "k", 30, 40, "", false),
		}, false},
		{"failed and unanswered reads are dropped", History{
			put(0, "k", "a", 0, 10, false),
			with(get(1, "k", 20, 30, "zzz", true), OutcomeFailed),
			with(get(1, "k", 40, 50, "zzz", true), OutcomeUnknown),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Check(tt.h, 10*time.Second)
			if tt.illegal {
				if err == nil || res.Verdict != porcupine.Illegal {
					t.Fatalf("verdict %s, err %v; want Illegal", res.Verdict, err)
				}
				if !strings.Contains(err.Error(), `key "k"`) {
					t.Fatalf("error does not name the key: %v", err)
				}
				return
			}
			if err != nil || res.Verdict != porcupine.Ok {
				t.Fatalf("verdict %s, err %v; want Ok", res.Verdict, err)
			}
		})
	}
}

// TestCheckIllegalDescription: the error of an illegal history says which
// operations cannot be ordered.
func TestCheckIllegalDescription(t *testing.T) {
	h := History{
		put(0, "k", "a", 0, 10, false),
		put(0, "k", "b", 20, 30, true),
		get(1, "k", 40, 50, "a", true),
		put(2, "other", "x", 0, 10, false),
	}
	_, err := Check(h, 10*time.Second)
	if err == nil {
		t.Fatal("stale read passed")
	}
	msg := err.Error()
	for _, want := range []string{`key "k" (3 operations)`, "orders 2", `put("k", "b")`, `get("k")`, `-> "a"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("description lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, `key "other"`) {
		t.Errorf("description names a linearizable key: %s", msg)
	}
}

// hardHistory is an illegal history that the checker can only reject after
// trying every order of n overlapping puts.
func hardHistory(n int) History {
	var h History
	for i := range n {
		op := put(i, "k", fmt.Sprint(i), time.Duration(i), time.Duration(n+i), false)
		h = append(h, with(op, OutcomeUnknown)) // unknown: no output constrains the order
	}
	return append(h, get(n, "k", time.Duration(3*n), time.Duration(3*n+1), "never written", true))
}

// TestCheckTimeoutIsAnError: when the checker runs out of time the verdict
// is Unknown, and Check reports an error rather than a pass.
func TestCheckTimeoutIsAnError(t *testing.T) {
	res, err := Check(hardHistory(24), 50*time.Millisecond)
	if err == nil {
		t.Fatalf("verdict %s passed", res.Verdict)
	}
	if res.Verdict != porcupine.Unknown {
		t.Fatalf("verdict %s, want Unknown (err %v)", res.Verdict, err)
	}
	if !strings.Contains(err.Error(), "not a pass") {
		t.Fatalf("error does not say the verdict is not a pass: %v", err)
	}
}

func TestCheckRejectsBadInput(t *testing.T) {
	good := History{put(0, "k", "a", 0, 10, false)}
	if _, err := Check(good, 0); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("zero timeout: %v", err)
	}
	bad := []struct {
		name string
		op   Op
		want string
	}{
		{"returns before call", put(0, "k", "a", 10, 5, false), "before its invocation"},
		{"no kind", Op{Input: Input{Key: "k"}, Outcome: OutcomeOK}, "invalid kind"},
		{"no key", put(0, "", "a", 0, 1, false), "empty key"},
		{"no outcome", Op{Input: Input{Kind: KindGet, Key: "k"}}, "invalid outcome"},
		{"ok but never returned", Op{Input: Input{Kind: KindGet, Key: "k"}, Outcome: OutcomeOK, Return: Never}, "must have returned"},
		{"negative client", put(-1, "k", "a", 0, 1, false), "negative client"},
	}
	for _, b := range bad {
		_, err := Check(History{b.op}, time.Second)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: error %v, want one containing %q", b.name, err, b.want)
		}
	}
}

func TestWriteHTML(t *testing.T) {
	h := History{
		put(0, "k", "a", 0, 10, false),
		put(0, "k", "b", 20, 30, true),
		get(1, "k", 40, 50, "a", true),
		with(put(2, "k", "c", 45, 46, true), OutcomeUnknown), // drawn as never returning
	}
	res, err := Check(h, 10*time.Second)
	if err == nil {
		t.Fatal("stale read passed")
	}
	path := filepath.Join(t.TempDir(), "history.html")
	if err := res.WriteHTML(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "<html") || !strings.Contains(string(b), `put(\"k\", \"b\")`) {
		t.Fatalf("visualization lacks the history: %.300s", b)
	}
	if err := (Result{}).WriteHTML(path); err == nil {
		t.Fatal("WriteHTML of an empty result succeeded")
	}
}

func TestCheckAcknowledged(t *testing.T) {
	tests := []struct {
		name  string
		h     History
		final map[string]Output
		want  string // "" for no error
	}{
		{"final read sees the write", History{put(0, "k", "a", 0, 10, false)},
			map[string]Output{"k": {Value: "a", Found: true}}, ""},
		{"overwritten by a later write", History{put(0, "k", "a", 0, 10, false), put(1, "k", "b", 20, 30, true)},
			map[string]Output{"k": {Value: "b", Found: true}}, ""},
		{"overwritten by a write invoked earlier that returned later", History{
			put(1, "k", "b", 0, 30, false), put(0, "k", "a", 5, 10, false)},
			map[string]Output{"k": {Value: "b", Found: true}}, ""},
		{"removed by a concurrent delete", History{put(0, "k", "a", 0, 10, false), del(1, "k", 5, 30, true)},
			map[string]Output{"k": {}}, ""},
		{"overwritten by an unknown write, even one that returned before", History{
			with(put(1, "k", "b", 0, 2, false), OutcomeUnknown), put(0, "k", "a", 5, 10, false)},
			map[string]Output{"k": {Value: "b", Found: true}}, ""},
		{"lost: the final read shows an older value", History{
			put(1, "k", "b", 0, 2, false), put(0, "k", "a", 5, 10, true)},
			map[string]Output{"k": {Value: "b", Found: true}}, `acknowledged write [client 0 put("k", "a")`},
		{"lost: the key is gone and no delete explains it", History{put(0, "k", "a", 0, 10, false)},
			map[string]Output{"k": {}}, "returned not set"},
		{"a failed write explains nothing", History{
			put(0, "k", "a", 0, 10, false), with(put(1, "k", "b", 20, 30, true), OutcomeFailed)},
			map[string]Output{"k": {Value: "b", Found: true}}, "is missing"},
		{"no final read", History{put(0, "k", "a", 0, 10, false)}, map[string]Output{}, `no final read of key "k"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckAcknowledged(tt.h, tt.final)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
