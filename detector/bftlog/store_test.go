package bftlog

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestStoreAddValidation gives each validity rule of Store.Add (DESIGN,
// "2P-BFT-Log in brief": valid iff ...) a case that breaks it, next to
// cases that must pass.
func TestStoreAddValidation(t *testing.T) {
	type addCase struct {
		name    string
		cfg     func(*Config)
		build   func(g *graph) *Message // sets up the store, returns the message to add
		wantErr error
		reason  InvalidReason // for ErrInvalid
		kept    bool          // for ErrInvalid
		missing []string      // for ErrMissingDeps: prev first, then deps in any order
	}
	cases := []addCase{
		{
			name:  "first message",
			build: func(g *graph) *Message { return g.msg("a1", "a", "") },
		},
		{
			// b1 ─ b2
			//       ↖ a1 ─ a2 (a1 deps b1, a2 deps b2)
			name: "chain whose deps advance",
			build: func(g *graph) *Message {
				g.add("b1", "b", "")
				g.add("b2", "b", "b1")
				g.add("a1", "a", "", "b1")
				return g.msg("a2", "a", "a1", "b2")
			},
		},
		{
			// a1 deps b1; a2 omits b; a3 deps b1 again (same, not older)
			name: "dep omitted then repeated",
			build: func(g *graph) *Message {
				g.add("b1", "b", "")
				g.add("a1", "a", "", "b1")
				g.add("a2", "a", "a1")
				return g.msg("a3", "a", "a2", "b1")
			},
		},
		{
			name: "bad signature",
			build: func(g *graph) *Message {
				m := g.msg("a1", "a", "")
				bad := *m
				bad.sig[0] ^= 1
				return &bad
			},
			wantErr: ErrBadSignature,
		},
		{
			name: "signature by another key",
			build: func(g *graph) *Message {
				m := g.msg("a1", "a", "")
				forged := signRaw(g.key("b"), ID{}, nil, []byte("a1"))
				bad := *m
				bad.sig = forged.sig
				return &bad
			},
			wantErr: ErrBadSignature,
		},
		{
			name: "missing prev",
			build: func(g *graph) *Message {
				g.msg("a1", "a", "")
				return g.msg("a2", "a", "a1")
			},
			wantErr: ErrMissingDeps,
			missing: []string{"a1"},
		},
		{
			name: "missing prev and deps",
			build: func(g *graph) *Message {
				g.msg("a1", "a", "")
				g.msg("b1", "b", "")
				g.add("c1", "c", "")
				g.msg("c2", "c", "c1")
				return g.msg("a2", "a", "a1", "b1", "c2")
			},
			wantErr: ErrMissingDeps,
			missing: []string{"a1", "b1", "c2"},
		},
		{
			name: "prev by another author",
			build: func(g *graph) *Message {
				b1 := g.add("b1", "b", "")
				return signRaw(g.key("a"), b1.ID(), nil, []byte("a2"))
			},
			wantErr: ErrInvalid, reason: ReasonPrevAuthor, kept: true,
		},
		{
			name: "dep names the wrong author",
			build: func(g *graph) *Message {
				b1 := g.add("b1", "b", "")
				return signRaw(g.key("a"), ID{}, []Dep{{Author: g.key("c").a, ID: b1.ID()}}, []byte("a1"))
			},
			wantErr: ErrInvalid, reason: ReasonDepAuthor, kept: true,
		},
		{
			name: "dep on own author",
			build: func(g *graph) *Message {
				a1 := g.add("a1", "a", "")
				return signRaw(g.key("a"), a1.ID(), []Dep{{Author: g.key("a").a, ID: a1.ID()}}, []byte("a2"))
			},
			wantErr: ErrInvalid, reason: ReasonSelfDep, kept: true,
		},
		{
			name: "two deps on one author",
			build: func(g *graph) *Message {
				b1 := g.add("b1", "b", "")
				b2 := g.add("b2", "b", "b1")
				bk := g.key("b").a
				return signRaw(g.key("a"), ID{}, []Dep{{Author: bk, ID: b1.ID()}, {Author: bk, ID: b2.ID()}}, []byte("a1"))
			},
			wantErr: ErrMalformed,
		},
		{
			name: "deps not sorted by author",
			build: func(g *graph) *Message {
				b1 := g.add("b1", "b", "")
				c1 := g.add("c1", "c", "")
				ds := []Dep{{Author: b1.Author(), ID: b1.ID()}, {Author: c1.Author(), ID: c1.ID()}}
				if ds[0].Author.Compare(ds[1].Author) < 0 {
					ds[0], ds[1] = ds[1], ds[0]
				}
				return signRaw(g.key("a"), ID{}, ds, []byte("a1"))
			},
			wantErr: ErrMalformed,
		},
		{
			// b1 ─ b2;  a1 deps b2, then a2 deps b1: older.
			name: "dep goes back to an older message",
			build: func(g *graph) *Message {
				g.add("b1", "b", "")
				g.add("b2", "b", "b1")
				g.add("a1", "a", "", "b2")
				return g.msg("a2", "a", "a1", "b1")
			},
			wantErr: ErrInvalid, reason: ReasonDepRegression, kept: true,
		},
		{
			// b1 ─ b2 ─ b3;  a1 deps b3, a2 and a3 omit b, a4 deps b2.
			name: "dep goes back across messages without deps",
			build: func(g *graph) *Message {
				g.add("b1", "b", "")
				g.add("b2", "b", "b1")
				g.add("b3", "b", "b2")
				g.add("a1", "a", "", "b3")
				g.add("a2", "a", "a1")
				g.add("a3", "a", "a2")
				return g.msg("a4", "a", "a3", "b2")
			},
			wantErr: ErrInvalid, reason: ReasonDepRegression, kept: true,
		},
		{
			// b1 ─ x2 ─ x3
			//  └── y2          a1 deps x3, a2 deps y2: concurrent, not after.
			name: "dep moves to a concurrent branch",
			build: func(g *graph) *Message {
				g.add("b1", "b", "")
				g.add("x2", "b", "b1")
				g.add("x3", "b", "x2")
				g.add("y2", "b", "b1")
				g.add("a1", "a", "", "x3")
				return g.msg("a2", "a", "a1", "y2")
			},
			wantErr: ErrInvalid, reason: ReasonDepRegression, kept: true,
		},
		{
			// bx and by are both first messages of b (a fork at none);
			// a1 deps bx, a2 deps by.
			name: "dep moves to another first message",
			build: func(g *graph) *Message {
				g.add("bx", "b", "")
				g.add("by", "b", "")
				g.add("a1", "a", "", "bx")
				return g.msg("a2", "a", "a1", "by")
			},
			wantErr: ErrInvalid, reason: ReasonDepRegression, kept: true,
		},
		{
			name: "content over the store limit",
			cfg:  func(c *Config) { c.MaxContentSize = 4 },
			build: func(g *graph) *Message {
				m, err := NewMessage(g.key("a").priv, ID{}, nil, []byte("12345"))
				if err != nil {
					g.t.Fatal(err)
				}
				return m
			},
			wantErr: ErrTooLarge,
		},
		{
			name: "per-author message limit",
			cfg:  func(c *Config) { c.MaxMessagesPerAuthor = 2 },
			build: func(g *graph) *Message {
				g.add("a1", "a", "")
				g.add("a2", "a", "a1")
				return g.msg("a3", "a", "a2")
			},
			wantErr: ErrAuthorFull,
		},
		{
			name: "author limit",
			cfg:  func(c *Config) { c.MaxAuthors = 2 },
			build: func(g *graph) *Message {
				g.add("a1", "a", "")
				g.add("b1", "b", "")
				return g.msg("c1", "c", "")
			},
			wantErr: ErrTooManyAuthors,
		},
		{
			name: "prev is a known invalid message",
			build: func(g *graph) *Message {
				b1 := g.add("b1", "b", "")
				bad := signRaw(g.key("a"), b1.ID(), nil, []byte("bad"))
				if err := g.s.Add(bad); !errors.Is(err, ErrInvalid) {
					g.t.Fatalf("setup: add bad = %v", err)
				}
				g.msgs["bad"] = bad
				return g.msg("a3", "a", "bad")
			},
			wantErr: ErrInvalidPredecessor,
		},
		{
			name: "second invalid message of an author is not kept",
			build: func(g *graph) *Message {
				b1 := g.add("b1", "b", "")
				first := signRaw(g.key("a"), b1.ID(), nil, []byte("first"))
				if err := g.s.Add(first); !errors.Is(err, ErrInvalid) {
					g.t.Fatalf("setup: add first = %v", err)
				}
				return signRaw(g.key("a"), b1.ID(), nil, []byte("second"))
			},
			wantErr: ErrInvalid, reason: ReasonPrevAuthor, kept: false,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGraph(t)
			if tc.cfg != nil {
				cfg := DefaultConfig()
				tc.cfg(&cfg)
				s, err := NewStore(cfg)
				if err != nil {
					t.Fatal(err)
				}
				g.s = s
			}
			m := tc.build(g)
			before := g.s.Len()
			invBefore := len(g.s.Invalid())
			err := g.s.Add(m)
			wantErr(t, err, tc.wantErr)
			if tc.wantErr == nil {
				if !g.s.Has(m.ID()) || g.s.Len() != before+1 {
					t.Fatalf("valid message not stored")
				}
				// Adding again is a no-op.
				wantErr(t, g.s.Add(m), nil)
				if g.s.Len() != before+1 {
					t.Fatalf("duplicate add changed the store")
				}
				return
			}
			if g.s.Has(m.ID()) || g.s.Len() != before {
				t.Fatalf("rejected message was stored as valid")
			}
			switch tc.wantErr {
			case ErrMissingDeps:
				var me *MissingDepsError
				if !errors.As(err, &me) {
					t.Fatalf("error %v is not a *MissingDepsError", err)
				}
				var want []ID
				for _, n := range tc.missing {
					want = append(want, g.id(n))
				}
				got := slices.Clone(me.Missing)
				// prev comes first; deps follow in the message's (author) order.
				slices.SortFunc(got[1:], ID.Compare)
				slices.SortFunc(want[1:], ID.Compare)
				if me.ID != m.ID() || !slices.Equal(got, want) {
					t.Fatalf("missing = %v for %s, want %v", me.Missing, me.ID.Short(), want)
				}
			case ErrInvalid:
				var ie *InvalidError
				if !errors.As(err, &ie) {
					t.Fatalf("error %v is not an *InvalidError", err)
				}
				if ie.Reason != tc.reason || ie.Kept != tc.kept || ie.ID != m.ID() || ie.Author != m.Author() {
					t.Fatalf("got reason %v kept %v id %s, want reason %v kept %v id %s", ie.Reason, ie.Kept, ie.ID.Short(), tc.reason, tc.kept, m.ID().Short())
				}
				p, ok := g.s.InvalidProofOf(m.Author())
				if tc.kept {
					if !ok || p.Message.ID() != m.ID() {
						t.Fatalf("proof not kept")
					}
					if err := VerifyInvalidProof(p); err != nil {
						t.Fatalf("kept proof does not verify: %v", err)
					}
					// Adding it again reports the same problem.
					err2 := g.s.Add(m)
					var ie2 *InvalidError
					if !errors.As(err2, &ie2) || ie2.Reason != tc.reason || !ie2.Kept {
						t.Fatalf("re-add = %v", err2)
					}
				} else if len(g.s.Invalid()) != invBefore {
					t.Fatalf("Invalid() grew although the proof was not kept")
				}
			default:
				if len(g.s.Invalid()) != invBefore {
					t.Fatalf("an error other than ErrInvalid kept a proof")
				}
			}
		})
	}
}

func TestStoreMessagesOrderAndCounts(t *testing.T) {
	g := newGraph(t)
	g.add("b1", "b", "")
	g.add("a1", "a", "", "b1")
	g.add("a2", "a", "a1")
	got := g.s.Messages()
	if len(got) != 3 || got[0].ID() != g.id("b1") || got[2].ID() != g.id("a2") {
		t.Fatalf("Messages() not in insertion order")
	}
	if g.s.Count(g.key("a").a) != 2 || g.s.Count(g.key("c").a) != 0 {
		t.Fatalf("Count wrong")
	}
	// Replaying in that order into a fresh store never misses a predecessor.
	s2, _ := NewStore(DefaultConfig())
	for _, m := range got {
		wantErr(t, s2.Add(m), nil)
	}
	if m, ok := g.s.Get(g.id("a1")); !ok || m.ID() != g.id("a1") {
		t.Fatalf("Get failed")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"MaxContentSize":       func(c *Config) { c.MaxContentSize = HardMaxContent + 1 },
		"MaxMessagesPerAuthor": func(c *Config) { c.MaxMessagesPerAuthor = 0 },
		"MaxAuthors":           func(c *Config) { c.MaxAuthors = -1 },
	} {
		c := DefaultConfig()
		mut(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: Validate() = %v", name, err)
		}
		if _, err := NewStore(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: NewStore accepted a bad config", name)
		}
	}
}

// TestVerifyInvalidProofRejects checks that VerifyInvalidProof does not
// accept a proof whose witness fails to show the claimed breach.
func TestVerifyInvalidProofRejects(t *testing.T) {
	g := newGraph(t)
	g.add("b1", "b", "")
	g.add("b2", "b", "b1")
	g.add("a1", "a", "", "b1")
	good := g.add("a2", "a", "a1", "b2") // valid: b1 ≤ b2
	bad := g.msg("a3", "a", "a2", "b1")  // regression: b2 then b1
	err := g.s.Add(bad)
	var ie *InvalidError
	if !errors.As(err, &ie) || ie.Reason != ReasonDepRegression {
		t.Fatalf("add a3 = %v", err)
	}
	proof, _ := g.s.InvalidProofOf(g.key("a").a)
	if err := VerifyInvalidProof(proof); err != nil {
		t.Fatalf("proof: %v", err)
	}
	b1, b2, a1, a2 := g.get("b1"), g.get("b2"), g.get("a1"), g.get("a2")
	cases := map[string]*InvalidProof{
		"nil":                   nil,
		"valid message blamed":  {Message: good, Reason: ReasonDepRegression, Witness: []*Message{a1, b1, b2}},
		"wrong reason":          {Message: bad, Reason: ReasonPrevAuthor, Witness: proof.Witness},
		"self dep not present":  {Message: bad, Reason: ReasonSelfDep},
		"dep author correct":    {Message: bad, Reason: ReasonDepAuthor, Witness: []*Message{b1}},
		"empty witness":         {Message: bad, Reason: ReasonDepRegression},
		"earlier chain missing": {Message: bad, Reason: ReasonDepRegression, Witness: []*Message{b2}},
		"dep chain missing":     {Message: bad, Reason: ReasonDepRegression, Witness: []*Message{a2}},
		"unknown reason":        {Message: bad, Reason: InvalidReason(99)},
	}
	for name, p := range cases {
		if err := VerifyInvalidProof(p); !errors.Is(err, ErrInvalidProof) {
			t.Errorf("%s: VerifyInvalidProof = %v, want ErrInvalidProof", name, err)
		}
	}
	// A forged signature on the blamed message voids the proof.
	forged := *bad
	forged.sig[5] ^= 0x40
	if err := VerifyInvalidProof(&InvalidProof{Message: &forged, Reason: ReasonDepRegression, Witness: proof.Witness}); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("forged signature accepted: %v", err)
	}
}

func TestVerifyForkProof(t *testing.T) {
	g := newGraph(t)
	g.add("a1", "a", "")
	x := g.add("x2", "a", "a1")
	y := g.add("y2", "a", "a1")
	z := g.add("z3", "a", "x2")
	r1 := g.add("r1", "a", "")
	r2 := g.msg("r2", "a", "")
	b1 := g.add("b1", "b", "")
	bx := signRaw(g.key("b"), b1.ID(), nil, []byte("a1")) // same prev as nothing of a
	forgedY := *y
	forgedY.sig[0] ^= 1
	cases := []struct {
		name string
		p    *ForkProof
		ok   bool
	}{
		{"same prev", &ForkProof{A: x, B: y}, true},
		{"either order", &ForkProof{A: y, B: x}, true},
		{"two first messages", &ForkProof{A: r1, B: r2}, true},
		{"nil proof", nil, false},
		{"missing message", &ForkProof{A: x}, false},
		{"zero message", &ForkProof{A: x, B: &Message{}}, false},
		{"same message twice", &ForkProof{A: x, B: x}, false},
		{"different prev", &ForkProof{A: x, B: z}, false},
		{"first message and non-first", &ForkProof{A: r1, B: x}, false},
		{"different authors", &ForkProof{A: b1, B: r1}, false},
		{"different authors same prev", &ForkProof{A: bx, B: x}, false},
		{"bad signature", &ForkProof{A: x, B: &forgedY}, false},
	}
	for _, tc := range cases {
		err := VerifyForkProof(tc.p)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalidProof) {
			t.Errorf("%s: VerifyForkProof = %v, want ErrInvalidProof", tc.name, err)
		}
	}
}
