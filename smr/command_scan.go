package smr

import (
	"bytes"
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// scanValidObject is scanFields for b that json.Valid accepted: one JSON
// value, surrounded by nothing but whitespace. Knowing that, it finds the
// top-level keys and the extent of their values by scanning bytes, without
// a tokenizer, and applies the same checks in the same order as
// scanFieldsTokens. The raw values it returns are sub-slices of b.
func scanValidObject(b []byte) ([]json.RawMessage, field, error) {
	i := skipSpace(b, 0)
	if b[i] != '{' {
		// Rare; the tokenizer's message depends on the value (a number
		// beyond float64 is "not valid JSON" there).
		return scanFieldsTokens(b)
	}
	raws := make([]json.RawMessage, fieldIndex(fieldEnd))
	var present field
	for i = skipSpace(b, i+1); b[i] != '}'; {
		key, raw, next := nextMember(b, i)
		f, err := fieldOf(key, present)
		if err != nil {
			return nil, 0, err
		}
		if err := checkValue(f, key, raw, uniqueKeysValid); err != nil {
			return nil, 0, err
		}
		raws[fieldIndex(f)] = raw
		present |= f
		i = next
	}
	return raws, present, nil
}

// uniqueKeysValid is checkUniqueKeys for a valid JSON value.
func uniqueKeysValid(raw []byte) error {
	if raw[0] != '{' {
		return nil
	}
	var seen []string // metadata holds few keys
	for i := skipSpace(raw, 1); raw[i] != '}'; {
		k, _, next := nextMember(raw, i)
		if slices.Contains(seen, k) {
			return Errorf(CodeMalformed, "metadata key %s appears more than once", quote(k))
		}
		seen = append(seen, k)
		i = next
	}
	return nil
}

// nextMember reads the member of a valid JSON object whose key starts at
// b[i]: its key, its raw value (a sub-slice of b, capped) and the index of
// the next member's key or of the closing '}'.
func nextMember(b []byte, i int) (key string, raw json.RawMessage, next int) {
	end := stringEnd(b, i)
	key = unquoteKey(b[i:end])
	i = skipSpace(b, skipSpace(b, end)+1) // past the ':'
	vend := valueEnd(b, i)
	raw = b[i:vend:vend]
	next = skipSpace(b, vend)
	if b[next] == ',' {
		next = skipSpace(b, next+1)
	}
	return key, raw, next
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i].
func stringEnd(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// valueEnd returns the index just past the JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	default: // number, true, false or null
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
		}
		return i
	}
}

// unquoteKey returns the text of a valid JSON string literal; it decodes
// only when the string has escapes or bytes that are not UTF-8. Decoding a
// valid literal cannot fail (invalid UTF-8 and lone surrogates become
// U+FFFD).
func unquoteKey(q []byte) string {
	if bytes.IndexByte(q, '\\') < 0 && utf8.Valid(q) {
		return string(q[1 : len(q)-1])
	}
	var s string
	_ = json.Unmarshal(q, &s)
	return s
}
