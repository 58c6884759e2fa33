package types

import "crypto/sha256"

// CertVerifier verifies certificates. Committee and QCCache implement it.
type CertVerifier interface {
	VerifyQC(qc QC) error
	VerifyTC(tc *TC) error
}

var (
	_ CertVerifier = (*Committee)(nil)
	_ CertVerifier = (*QCCache)(nil)
)

// QCCache remembers certificates that verified, keyed by the SHA-256 of
// their canonical encoding (signatures included), so a replica checks each
// certificate's signatures once however often it arrives. Failures are not
// cached. It holds at most its size; the oldest entries are forgotten first.
//
// A QCCache is not safe for concurrent use: it belongs to one core.
type QCCache struct {
	c     *Committee
	size  int
	seen  map[Hash]struct{}
	order []Hash
	next  int
}

// NewQCCache returns a cache over c holding up to size certificates
// (minimum 16).
func NewQCCache(c *Committee, size int) *QCCache {
	size = max(size, 16)
	return &QCCache{c: c, size: size, seen: make(map[Hash]struct{})}
}

// Committee returns the committee the cache verifies against.
func (q *QCCache) Committee() *Committee { return q.c }

func (q *QCCache) remember(k Hash) {
	if len(q.order) < q.size {
		q.order = append(q.order, k)
	} else {
		delete(q.seen, q.order[q.next])
		q.order[q.next] = k
		q.next = (q.next + 1) % q.size
	}
	q.seen[k] = struct{}{}
}

// VerifyQC is Committee.VerifyQC, memoized.
func (q *QCCache) VerifyQC(qc QC) error {
	if qc.View == 0 {
		return q.c.VerifyQC(qc)
	}
	e := encoder{b: make([]byte, 0, 1+qcSize(qc))}
	e.u8('q')
	e.qc(qc)
	k := sha256.Sum256(e.b)
	if _, ok := q.seen[k]; ok {
		return nil
	}
	if err := q.c.VerifyQC(qc); err != nil {
		return err
	}
	q.remember(k)
	return nil
}

// VerifyTC is Committee.VerifyTC, memoized.
func (q *QCCache) VerifyTC(tc *TC) error {
	if tc == nil {
		return q.c.VerifyTC(tc)
	}
	k := sha256.Sum256(append([]byte{'t'}, MarshalTC(tc)...))
	if _, ok := q.seen[k]; ok {
		return nil
	}
	if err := q.c.VerifyTC(tc); err != nil {
		return err
	}
	q.remember(k)
	return nil
}
