package bftlog

import (
	"fmt"
	"testing"
)

// benchChain adds to s a chain of n messages by k, after prev, and returns
// their ids.
func benchChain(b *testing.B, s *Store, k tkey, prev ID, n int, tag string) []ID {
	b.Helper()
	ids := make([]ID, n)
	for i := range n {
		m, err := NewMessage(k.priv, prev, nil, fmt.Appendf(nil, "%s %d", tag, i))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Add(m); err != nil {
			b.Fatal(err)
		}
		prev = m.ID()
		ids[i] = prev
	}
	return ids
}

// forkedStore builds a: prefix of n messages, then two branches x and y of
// n messages each.
func forkedStore(b *testing.B, n int) (*Store, tkey, []ID, []ID, []ID) {
	s, err := NewStore(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	k := newKey(0)
	prefix := benchChain(b, s, k, ID{}, n, "p")
	x := benchChain(b, s, k, prefix[n-1], n, "x")
	y := benchChain(b, s, k, prefix[n-1], n, "y")
	return s, k, prefix, x, y
}

// BenchmarkAppend measures the common case: a growing log takes the next
// message of its chain.
func BenchmarkAppend(b *testing.B) {
	s, k, prefix, _, _ := forkedStore(b, 1024)
	b.ResetTimer()
	for i := range b.N {
		j := 1 + i%(len(prefix)-1)
		if _, err := s.Append(Log{Author: k.a, Last: prefix[j-1]}, prefix[j]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendFork measures a growing log at the tip of one deep branch
// taking the tip of the other: LogPrefix over 2×1024 messages.
func BenchmarkAppendFork(b *testing.B) {
	s, k, _, x, y := forkedStore(b, 1024)
	l := Log{Author: k.a, Last: x[len(x)-1]}
	b.ResetTimer()
	for range b.N {
		got, err := s.Append(l, y[len(y)-1])
		if err != nil || got.Growing() {
			b.Fatal(err)
		}
	}
}

func BenchmarkMerge(b *testing.B) {
	s, k, prefix, x, y := forkedStore(b, 1024)
	fork, err := s.Append(Log{Author: k.a, Last: x[10]}, y[10])
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name   string
		l1, l2 Log
	}{
		{"growing-far-apart", Log{Author: k.a, Last: prefix[3]}, Log{Author: k.a, Last: y[len(y)-1]}},
		{"growing-concurrent-deep", Log{Author: k.a, Last: x[len(x)-1]}, Log{Author: k.a, Last: y[len(y)-1]}},
		{"shrinking-and-growing", fork, Log{Author: k.a, Last: x[len(x)-1]}},
		{"both-shrinking", fork, fork},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				if _, err := s.Merge(tc.l1, tc.l2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFrontierMerge merges two frontiers of 7 authors (a Tandem
// cluster), one of them forked.
func BenchmarkFrontierMerge(b *testing.B) {
	s, err := NewStore(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	f1, f2 := s.NewFrontier(), s.NewFrontier()
	for a := range 7 {
		k := newKey(a)
		c := benchChain(b, s, k, ID{}, 256, "c")
		if err := f1.Update(c[100]); err != nil {
			b.Fatal(err)
		}
		if err := f2.Update(c[255]); err != nil {
			b.Fatal(err)
		}
		if a == 0 {
			y := benchChain(b, s, k, c[50], 10, "y")
			if err := f1.Update(y[9]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for range b.N {
		m := f1.Clone()
		if err := m.Merge(f2); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreAdd measures validation and storage of one message with a
// dep, signature check included.
func BenchmarkStoreAdd(b *testing.B) {
	ka, kb := newKey(0), newKey(1)
	b1, err := NewMessage(kb.priv, ID{}, nil, []byte("b1"))
	if err != nil {
		b.Fatal(err)
	}
	const n = 1024
	msgs := make([]*Message, n)
	prev := ID{}
	for i := range msgs {
		m, err := NewMessage(ka.priv, prev, []Dep{{Author: kb.a, ID: b1.ID()}}, fmt.Appendf(nil, "attestation %d", i))
		if err != nil {
			b.Fatal(err)
		}
		msgs[i], prev = m, m.ID()
	}
	b.ResetTimer()
	var s *Store
	for i := range b.N {
		if i%n == 0 {
			b.StopTimer()
			s, _ = NewStore(DefaultConfig())
			if err := s.Add(b1); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if err := s.Add(msgs[i%n]); err != nil {
			b.Fatal(err)
		}
	}
}
