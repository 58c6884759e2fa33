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
	i = skipSpace(b, i+1)
	for b[i] != '}' {
		end := stringEnd(b, i)
		key, err := unquoteKey(b[i:end])
		if err != nil {
			return nil, 0, Errorf(CodeMalformed, "command is not valid JSON")
		}
		f, ok := fieldByName(key)
		if !ok {
			return nil, 0, Errorf(CodeMalformed, "unknown field %s", quote(key))
		}
		if present&f != 0 {
			return nil, 0, Errorf(CodeMalformed, "field %s appears more than once", key)
		}
		i = skipSpace(b, skipSpace(b, end)+1) // past the ':'
		vend := valueEnd(b, i)
		raw := json.RawMessage(b[i:vend:vend])
		if string(raw) == "null" {
			return nil, 0, Errorf(CodeMalformed, "field %s is null", key)
		}
		if f == fMetadata {
			if err := uniqueKeysValid(raw); err != nil {
				return nil, 0, err
			}
		}
		raws[fieldIndex(f)] = raw
		present |= f
		i = skipSpace(b, vend)
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
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
		end := stringEnd(raw, i)
		k, err := unquoteKey(raw[i:end])
		if err != nil {
			return nil
		}
		if slices.Contains(seen, k) {
			return Errorf(CodeMalformed, "metadata key %s appears more than once", quote(k))
		}
		seen = append(seen, k)
		i = skipSpace(raw, valueEnd(raw, skipSpace(raw, skipSpace(raw, end)+1)))
		if raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return nil
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

// unquoteKey returns the text of a JSON string; it decodes only when the
// string has escapes or bytes that are not UTF-8.
func unquoteKey(q []byte) (string, error) {
	if bytes.IndexByte(q, '\\') < 0 && utf8.Valid(q) {
		return string(q[1 : len(q)-1]), nil
	}
	var s string
	err := json.Unmarshal(q, &s)
	return s, err
}
