package smr

import "encoding/binary"

// appendBatchBinary appends the payload of a batch entry to b.
func appendBatchBinary(b []byte, envs []Envelope) ([]byte, error) {
	if len(envs) < 2 || len(envs) > MaxBatchEnvelopes {
		return nil, Errorf(CodeMalformed, "cannot encode batch: %d envelopes, a batch holds 2 to %d", len(envs), MaxBatchEnvelopes)
	}
	size := 4
	for i := range envs {
		if err := envs[i].checkEncodable(); err != nil {
			return nil, err
		}
		size += envelopeHeaderLen + len(envs[i].Command)
	}
	b = append(make([]byte, 0, len(b)+size), b...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(envs)))
	for i := range envs {
		b = envs[i].appendBinary(b)
	}
	return b, nil
}

// decodeBatchBinary decodes the payload of a batch entry: the count must
// be in range and the envelopes must fill the payload exactly.
func decodeBatchBinary(p []byte) ([]Envelope, error) {
	if len(p) < 4 {
		return nil, Errorf(CodeMalformed, "batch is %d bytes, too short for its count", len(p))
	}
	n := binary.BigEndian.Uint32(p)
	if n < 2 || n > MaxBatchEnvelopes {
		return nil, Errorf(CodeMalformed, "batch holds %d envelopes, a batch holds 2 to %d", n, MaxBatchEnvelopes)
	}
	rest := p[4:]
	envs := make([]Envelope, n)
	for i := range envs {
		if len(rest) < envelopeHeaderLen {
			return nil, Errorf(CodeMalformed, "batch envelope %d of %d is cut short: %d bytes left", i+1, n, len(rest))
		}
		size := envelopeHeaderLen + uint64(binary.BigEndian.Uint32(rest[envelopeHeaderLen-4:envelopeHeaderLen]))
		if size > uint64(len(rest)) {
			return nil, Errorf(CodeMalformed, "batch envelope %d of %d is %d bytes but only %d follow", i+1, n, size, len(rest))
		}
		if err := envs[i].UnmarshalBinary(rest[:size]); err != nil {
			return nil, err
		}
		rest = rest[size:]
	}
	if len(rest) != 0 {
		return nil, Errorf(CodeMalformed, "batch has %d bytes after its %d envelopes", len(rest), n)
	}
	return envs, nil
}
