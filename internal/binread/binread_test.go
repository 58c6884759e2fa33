package binread

import (
	"errors"
	"fmt"
	"testing"
)

// TestFirstFailureSticks: reads past the end fail with the formatter's
// error naming the field and offset, and every later read returns zero.
func TestFirstFailureSticks(t *testing.T) {
	r := New([]byte{1, 0, 2, 0, 0, 0, 3}, func(field string, off int, reason string) error {
		return fmt.Errorf("%s@%d: %s", field, off, reason)
	})
	if r.U8("a") != 1 || r.U16("b") != 2 || r.U32("c") != 3 || r.Err() != nil || r.Remaining() != 0 {
		t.Fatalf("reads: off %d err %v", r.Off(), r.Err())
	}
	if v := r.U64("d"); v != 0 || r.Err() == nil || r.Err().Error() != "d@7: needs 8 bytes, 0 left" {
		t.Fatalf("U64 past the end = %d, %v", v, r.Err())
	}
	first := r.Err()
	r.Fail("e", "later")
	if r.U8("f") != 0 || !errors.Is(r.Err(), first) {
		t.Fatalf("a later failure replaced the first: %v", r.Err())
	}
}
