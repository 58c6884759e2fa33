package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestSignBytesGolden pins the bytes members sign (DESIGN principle 13:
// sign-bytes carry a domain tag and a version and are golden-tested).
func TestSignBytesGolden(t *testing.T) {
	golden(t, "signbytes_checkpoint.golden", ckptStatement(3, 1200, "state").SignBytes())
	golden(t, "signbytes_handoff.golden", handoffStatement().SignBytes())
	if !bytes.HasPrefix(ckptStatement(3, 1200, "state").SignBytes(), []byte(SignTag)) {
		t.Fatal("SignBytes does not start with the domain tag")
	}
}

// TestSignBytesDistinguishFields: changing any field changes the bytes, and
// a checkpoint and a handoff never share bytes.
func TestSignBytesDistinguishFields(t *testing.T) {
	base := handoffStatement()
	variants := map[string]func(*Statement){
		"kind":    func(s *Statement) { s.Kind = KindCheckpoint; s.Mode = ""; s.Members = nil },
		"epoch":   func(s *Statement) { s.Epoch++ },
		"index":   func(s *Statement) { s.Index++ },
		"hash":    func(s *Statement) { s.StateHash[31] ^= 1 },
		"mode":    func(s *Statement) { s.Mode = ModeCFT },
		"members": func(s *Statement) { s.Members = []string{"n1", "n2", "n3", "n5"} },
		// Moving a byte between adjacent members must not collide.
		"split": func(s *Statement) { s.Members = []string{"n1", "n2", "n3n", "4"} },
	}
	seen := map[string]string{string(base.SignBytes()): "base"}
	for name, f := range variants {
		s := base.clone()
		f(&s)
		b := string(s.SignBytes())
		if prev, dup := seen[b]; dup {
			t.Errorf("%s and %s sign the same bytes", name, prev)
		}
		seen[b] = name
		if s.Equal(base) || s.Digest() == base.Digest() {
			t.Errorf("%s: Equal/Digest do not see the change", name)
		}
	}
	c := base.clone()
	if !c.Equal(base) || c.Digest() != base.Digest() {
		t.Error("a copy is not Equal")
	}
	cp := ckptStatement(1, 2, "x")
	withEmpty := cp
	withEmpty.Members = []string{}
	if !cp.Equal(withEmpty) || !bytes.Equal(cp.SignBytes(), withEmpty.SignBytes()) {
		t.Error("nil and empty member lists differ")
	}
}

// TestSignTagIsUnique: no other domain tag in the module equals or
// prefixes the checkpoint tag, nor the other way round.
func TestSignTagIsUnique(t *testing.T) {
	root := filepath.Join("..")
	var tags []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// This package's own files are not other tags.
			if n := d.Name(); n == "testdata" || path == filepath.Join(root, "checkpoint") || strings.HasPrefix(n, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if v, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(v, "tandem/") && len(v) > len("tandem/") {
					tags = append(tags, v)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) < 5 {
		t.Fatalf("found only %d tags in the module; the scan is broken", len(tags))
	}
	for _, tag := range tags {
		if strings.HasPrefix(SignTag, tag) || strings.HasPrefix(tag, SignTag) {
			t.Errorf("domain tag %q collides with %q", tag, SignTag)
		}
	}
}

func TestStatementValidate(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	cases := []struct {
		name string
		f    func(*Statement)
		want string // "" = valid
	}{
		{"checkpoint", func(s *Statement) { *s = ckptStatement(1, 5, "a") }, ""},
		{"handoff", func(*Statement) {}, ""},
		{"handoff cft of 3", func(s *Statement) { s.Mode = ModeCFT; s.Members = []string{"a", "b", "c"} }, ""},
		{"unknown kind", func(s *Statement) { s.Kind = 9 }, "kind 9 is unknown"},
		{"zero kind", func(s *Statement) { s.Kind = 0 }, "kind 0 is unknown"},
		{"checkpoint with mode", func(s *Statement) { *s = ckptStatement(1, 5, "a"); s.Mode = "bft" }, "a checkpoint has no mode"},
		{"checkpoint with members", func(s *Statement) { *s = ckptStatement(1, 5, "a"); s.Members = []string{"a"} }, "no member list"},
		{"handoff no mode", func(s *Statement) { s.Mode = "" }, `handoff mode "" is unknown`},
		{"handoff bad mode", func(s *Statement) { s.Mode = "auto" }, `handoff mode "auto" is unknown`},
		{"handoff no members", func(s *Statement) { s.Members = nil }, "the list is empty"},
		{"unsorted", func(s *Statement) { s.Members = []string{"n2", "n1", "n3", "n4"} }, "not sorted"},
		{"duplicate", func(s *Statement) { s.Members = []string{"n1", "n1", "n3", "n4"} }, `"n1" appears twice`},
		{"empty ID", func(s *Statement) { s.Members = []string{"", "n1", "n3", "n4"} }, "empty member ID"},
		{"long ID", func(s *Statement) { s.Members = []string{"a", "b", "c", long} }, "longer than 255"},
		{"bft of 3", func(s *Statement) { s.Members = []string{"n1", "n2", "n3"} }, "at least 4 members"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := handoffStatement()
			c.f(&s)
			err := s.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidStatement) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate = %v, want ErrInvalidStatement containing %q", err, c.want)
			}
			if _, err := Sign(testKey(1), "n1", s); err == nil {
				t.Fatal("Sign accepted an invalid statement")
			}
		})
	}
}

// TestBinaryGolden pins the vote and certificate encodings and their JSON.
func TestBinaryGolden(t *testing.T) {
	v := mustSign(t, 1, handoffStatement())
	vb, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "vote_handoff.golden", vb)
	cert := certOf(t, ckptStatement(3, 1200, "state"), 1, 2, 3)
	cb, err := cert.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "certificate_checkpoint.golden", cb)
	hc := certOf(t, handoffStatement(), 4, 2, 3)
	hb, err := hc.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "certificate_handoff.golden", hb)
	j, err := json.MarshalIndent(hc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	goldenText(t, "certificate_handoff.json.golden", string(j)+"\n")
	fc := certOf(t, handoffStatement(), 2, 3)
	fc.Form = FormFallback
	fb, err := fc.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "certificate_handoff_fallback.golden", fb)
	fj, err := json.MarshalIndent(fc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	goldenText(t, "certificate_handoff_fallback.json.golden", string(fj)+"\n")

	// Round trips.
	var v2 Vote
	if err := v2.UnmarshalBinary(vb); err != nil || !v2.Statement.Equal(v.Statement) || v2.Signer != v.Signer || !bytes.Equal(v2.Sig, v.Sig) {
		t.Fatalf("vote round trip: %v %+v", err, v2)
	}
	var c2 Certificate
	if err := c2.UnmarshalBinary(hb); err != nil {
		t.Fatal(err)
	}
	if err := c2.Verify(testCommittee(t, 4), nil); err != nil {
		t.Fatalf("decoded certificate does not verify: %v", err)
	}
	var c3 Certificate
	if err := json.Unmarshal(j, &c3); err != nil {
		t.Fatal(err)
	}
	if b3, _ := c3.MarshalBinary(); !bytes.Equal(b3, hb) {
		t.Fatal("JSON round trip changed the certificate")
	}
	var fc2 Certificate
	if err := fc2.UnmarshalBinary(fb); err != nil || fc2.Form != FormFallback {
		t.Fatalf("fallback certificate round trip: %v, form %s", err, fc2.Form)
	}
	if err := fc2.Verify(testCommittee(t, 4), []string{"n4"}); err != nil {
		t.Fatalf("decoded fallback certificate does not verify with n4 quarantined: %v", err)
	}
	var fc3 Certificate
	if err := json.Unmarshal(fj, &fc3); err != nil {
		t.Fatal(err)
	}
	if b3, _ := fc3.MarshalBinary(); !bytes.Equal(b3, fb) {
		t.Fatal("JSON round trip changed the fallback certificate")
	}
	vj, _ := json.Marshal(v)
	var v3 Vote
	if err := json.Unmarshal(vj, &v3); err != nil || v3.Verify(testCommittee(t, 4)) != nil {
		t.Fatalf("vote JSON round trip: %v", err)
	}
}

func TestJSONRejectsBadInput(t *testing.T) {
	for name, in := range map[string]string{
		"bad hex":      `{"statement":{"kind":"checkpoint","epoch":1,"index":1,"state_hash":"zz"},"sigs":[]}`,
		"short hash":   `{"statement":{"kind":"checkpoint","epoch":1,"index":1,"state_hash":"00"},"sigs":[]}`,
		"unknown kind": `{"statement":{"kind":"other","epoch":1,"index":1,"state_hash":""},"sigs":[]}`,
		"invalid":      `{"statement":{"kind":"handoff","epoch":1,"index":1,"state_hash":"` + strings.Repeat("00", 32) + `"},"sigs":[]}`,
		"duplicate signer": `{"statement":{"kind":"checkpoint","epoch":1,"index":1,"state_hash":"` + strings.Repeat("00", 32) +
			`"},"sigs":[{"signer":"a","sig":""},{"signer":"a","sig":""}]}`,
		"unknown form": `{"statement":{"kind":"checkpoint","epoch":1,"index":1,"state_hash":"` + strings.Repeat("00", 32) +
			`"},"form":"majority","sigs":[]}`,
		"fallback checkpoint": `{"statement":{"kind":"checkpoint","epoch":1,"index":1,"state_hash":"` + strings.Repeat("00", 32) +
			`"},"form":"fallback","sigs":[]}`,
	} {
		var c Certificate
		if err := json.Unmarshal([]byte(in), &c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
