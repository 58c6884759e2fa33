package smr

import (
	"crypto/ed25519"
	"encoding/binary"
	"math"
	"strconv"
)

// EntryKind says what an Entry carries.
type EntryKind uint8

// Entry kinds. EntryCommand is the zero value, so an Entry literal with only
// Time and Env is a command entry.
const (
	EntryCommand EntryKind = 0 // a signed client envelope (Entry.Env)
	EntryGenesis EntryKind = 1 // the cluster's genesis (Entry.Genesis)
	EntryRestore EntryKind = 2 // an admin-signed restore of a snapshot (Entry.Restore)
	// EntryEpochSwitch ends the epoch (Entry.Switch; see EpochSwitch).
	EntryEpochSwitch EntryKind = 3
	// EntryBatch carries several client envelopes (Entry.Batch), executed
	// in order at the entry's index as if each were a command entry with
	// the entry's time. The Raft engine batches concurrent proposals into
	// one entry.
	EntryBatch EntryKind = 4
)

// MaxBatchEnvelopes bounds the envelopes of a batch entry.
const MaxBatchEnvelopes = 4096

func (k EntryKind) String() string {
	switch k {
	case EntryCommand:
		return "command"
	case EntryGenesis:
		return "genesis"
	case EntryRestore:
		return "restore"
	case EntryEpochSwitch:
		return "epoch-switch"
	case EntryBatch:
		return "batch"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Entry is what the consensus log carries: a client envelope, the genesis
// or a restore, and the time the proposing leader attached to it. Checking
// that time against real time is the engine's job (see doc.go); the state
// machine's clock is the maximum of the times of the commands it
// has executed, so commands never move it backwards. A genesis entry does
// not move it; a restore entry replaces the state with the snapshot's but
// keeps the later of the two clocks.
//
// Exactly the field of Kind is set: Env for EntryCommand, Genesis for
// EntryGenesis, Restore for EntryRestore, Switch for EntryEpochSwitch,
// Batch (two or more envelopes) for EntryBatch.
type Entry struct {
	Kind    EntryKind
	Time    int64 // leader-proposed time, Unix nanoseconds
	Env     Envelope
	Genesis *Genesis
	Restore *Restore
	Switch  *EpochSwitch
	Batch   []Envelope
}

// NewCommandEntry returns the command entry of env at time t (Unix nanos).
func NewCommandEntry(t int64, env Envelope) Entry {
	return Entry{Kind: EntryCommand, Time: t, Env: env}
}

// NewBatchEntry returns the batch entry of envs at time t (Unix nanos).
func NewBatchEntry(t int64, envs []Envelope) Entry {
	return Entry{Kind: EntryBatch, Time: t, Batch: envs}
}

// NewGenesisEntry returns the genesis entry of g at time t. It does not
// validate g: Apply does, so that every replica reports the same outcome.
func NewGenesisEntry(t int64, g Genesis) Entry {
	c := g.canonical()
	return Entry{Kind: EntryGenesis, Time: t, Genesis: &c}
}

// NewRestoreEntry returns the restore entry of r at time t. It does not
// check r: Apply does (PrecheckRestore runs the same checks beforehand).
func NewRestoreEntry(t int64, r Restore) Entry {
	return Entry{Kind: EntryRestore, Time: t, Restore: &r}
}

// Entry versions: the first byte of the binary form.
const (
	entryV1 byte = 1 // command entries
	entryV2 byte = 2 // entries with an explicit kind byte (genesis, restore)
)

// entryV2HeaderLen is version, kind and time.
const entryV2HeaderLen = 1 + 1 + 8

// restoreFixedLen is the fixed part of a restore payload: admin key, time,
// signature and the request URI length.
const restoreFixedLen = ed25519.PublicKeySize + 8 + ed25519.SignatureSize + 4

// MarshalBinary encodes ent for the log. All integers are big-endian.
//
//	version 1, EntryCommand:
//	    0x01 || time (int64) || envelope (Envelope.MarshalBinary)
//	version 2, any other kind:
//	    0x02 || kind (1 byte) || time (int64) || payload
//	    EntryGenesis (1): the genesis encoding (see appendGenesisBinary):
//	        count (uint32) || admin keys (32 each, ascending) ||
//	        result window (uint32) || max command bytes (uint32)
//	    EntryRestore (2): admin key (32) || time (int64, unix seconds) ||
//	        signature (64) || len(request URI) (uint32) || request URI ||
//	        snapshot (the rest of the entry)
//	    EntryEpochSwitch (3): see appendSwitchBinary
//	    EntryBatch (4): count (uint32, 2..MaxBatchEnvelopes) || the
//	        envelopes, each as Envelope.MarshalBinary (self-delimiting)
//
// Command entries keep version 1, byte for byte the format that predates
// entry kinds; version 2 never carries kind 0. So every Entry has exactly one
// encoding. MarshalBinary fails (with an *Error) when the kind is unknown,
// a field of another kind is set, or a key, signature or length does not fit
// the format.
func (ent *Entry) MarshalBinary() ([]byte, error) {
	switch ent.Kind {
	case EntryCommand:
		if ent.Genesis != nil || ent.Restore != nil || ent.Switch != nil || ent.Batch != nil {
			return nil, Errorf(CodeMalformed, "cannot encode entry: a command entry carries a genesis, a restore, an epoch switch or a batch")
		}
		if err := ent.Env.checkEncodable(); err != nil {
			return nil, err
		}
		b := make([]byte, 0, 1+8+envelopeHeaderLen+len(ent.Env.Command))
		b = append(b, entryV1)
		b = binary.BigEndian.AppendUint64(b, uint64(ent.Time))
		return ent.Env.appendBinary(b), nil

	case EntryGenesis:
		if ent.Genesis == nil || ent.Restore != nil || ent.Switch != nil || ent.Batch != nil || !ent.Env.isZero() {
			return nil, Errorf(CodeMalformed, "cannot encode entry: a genesis entry carries exactly a genesis")
		}
		b := appendEntryV2Header(make([]byte, 0, entryV2HeaderLen+4+len(ent.Genesis.AdminKeys)*ed25519.PublicKeySize+8), EntryGenesis, ent.Time)
		return appendGenesisBinary(b, *ent.Genesis)

	case EntryRestore:
		if ent.Restore == nil || ent.Genesis != nil || ent.Switch != nil || ent.Batch != nil || !ent.Env.isZero() {
			return nil, Errorf(CodeMalformed, "cannot encode entry: a restore entry carries exactly a restore")
		}
		r := ent.Restore
		if len(r.Admin) != ed25519.PublicKeySize {
			return nil, Errorf(CodeMalformed, "cannot encode restore: admin key is %d bytes, want %d", len(r.Admin), ed25519.PublicKeySize)
		}
		if len(r.Sig) != ed25519.SignatureSize {
			return nil, Errorf(CodeMalformed, "cannot encode restore: signature is %d bytes, want %d", len(r.Sig), ed25519.SignatureSize)
		}
		if uint64(len(r.RequestURI)) > math.MaxUint32 {
			return nil, Errorf(CodeTooLarge, "cannot encode restore: request URI is %d bytes", len(r.RequestURI))
		}
		b := make([]byte, 0, entryV2HeaderLen+restoreFixedLen+len(r.RequestURI)+len(r.Snapshot))
		b = appendEntryV2Header(b, EntryRestore, ent.Time)
		b = append(b, r.Admin...)
		b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
		b = append(b, r.Sig...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.RequestURI)))
		b = append(b, r.RequestURI...)
		return append(b, r.Snapshot...), nil

	case EntryEpochSwitch:
		if ent.Switch == nil || ent.Genesis != nil || ent.Restore != nil || ent.Batch != nil || !ent.Env.isZero() {
			return nil, Errorf(CodeMalformed, "cannot encode entry: an epoch switch entry carries exactly an epoch switch")
		}
		b := appendEntryV2Header(make([]byte, 0, entryV2HeaderLen+64+len(ent.Switch.Reason)+len(ent.Switch.RequestURI)+len(ent.Switch.Body)), EntryEpochSwitch, ent.Time)
		return appendSwitchBinary(b, ent.Switch)

	case EntryBatch:
		if ent.Genesis != nil || ent.Restore != nil || ent.Switch != nil || !ent.Env.isZero() {
			return nil, Errorf(CodeMalformed, "cannot encode entry: a batch entry carries exactly envelopes")
		}
		return appendBatchBinary(appendEntryV2Header(nil, EntryBatch, ent.Time), ent.Batch)
	}
	return nil, Errorf(CodeMalformed, "cannot encode entry: unknown kind %d", uint8(ent.Kind))
}

// EntryKindOf reports the kind of an encoded entry from its header alone
// (nothing else is checked; UnmarshalBinary decides whether it is valid).
func EntryKindOf(data []byte) (EntryKind, bool) {
	switch {
	case len(data) >= 1 && data[0] == entryV1:
		return EntryCommand, true
	case len(data) >= 2 && data[0] == entryV2:
		return EntryKind(data[1]), true
	}
	return 0, false
}

// EnvelopeBytes returns the envelope part of an encoded command entry
// (what follows its version and time), aliasing data, without decoding it.
func EnvelopeBytes(data []byte) ([]byte, bool) {
	if len(data) < 9 || data[0] != entryV1 {
		return nil, false
	}
	return data[9:], true
}

func appendEntryV2Header(b []byte, k EntryKind, t int64) []byte {
	b = append(b, entryV2, byte(k))
	return binary.BigEndian.AppendUint64(b, uint64(t))
}

// isZero reports whether e has no content (the Env of a non-command entry).
func (e *Envelope) isZero() bool {
	return len(e.Client) == 0 && e.Seq == 0 && len(e.Command) == 0 && len(e.Sig) == 0
}

// UnmarshalBinary decodes what MarshalBinary produced. An unknown version or
// kind is an error, so that later kinds of entries can be added. ent does not
// alias data. Errors are *Error with CodeMalformed, and their messages come
// from this package's templates only.
func (ent *Entry) UnmarshalBinary(data []byte) error {
	if len(data) == 0 {
		return Errorf(CodeMalformed, "entry is empty")
	}
	switch data[0] {
	case entryV1:
		if len(data) < 9 {
			return Errorf(CodeMalformed, "entry is %d bytes, too short for its time", len(data))
		}
		var env Envelope
		if err := env.UnmarshalBinary(data[9:]); err != nil {
			return err
		}
		*ent = Entry{Kind: EntryCommand, Time: int64(binary.BigEndian.Uint64(data[1:9])), Env: env}
		return nil
	case entryV2:
	default:
		return Errorf(CodeMalformed, "entry version %d is unknown (this state machine reads versions %d and %d)", data[0], entryV1, entryV2)
	}
	if len(data) < entryV2HeaderLen {
		return Errorf(CodeMalformed, "entry is %d bytes, too short for its kind and time", len(data))
	}
	kind := EntryKind(data[1])
	t := int64(binary.BigEndian.Uint64(data[2:10]))
	payload := data[entryV2HeaderLen:]
	switch kind {
	case EntryGenesis:
		g, err := decodeGenesisBinary(payload)
		if err != nil {
			return err
		}
		*ent = Entry{Kind: EntryGenesis, Time: t, Genesis: g}
		return nil
	case EntryRestore:
		r, err := decodeRestoreBinary(payload)
		if err != nil {
			return err
		}
		*ent = Entry{Kind: EntryRestore, Time: t, Restore: r}
		return nil
	case EntryEpochSwitch:
		sw, err := decodeSwitchBinary(payload)
		if err != nil {
			return err
		}
		*ent = Entry{Kind: EntryEpochSwitch, Time: t, Switch: sw}
		return nil
	case EntryBatch:
		envs, err := decodeBatchBinary(payload)
		if err != nil {
			return err
		}
		*ent = Entry{Kind: EntryBatch, Time: t, Batch: envs}
		return nil
	case EntryCommand:
		return Errorf(CodeMalformed, "entry version %d with kind command is invalid: command entries use version %d", entryV2, entryV1)
	}
	return Errorf(CodeMalformed, "entry kind %d is unknown (this state machine reads kinds %d (genesis), %d (restore), %d (epoch switch) and %d (batch) in version %d)", data[1], EntryGenesis, EntryRestore, EntryEpochSwitch, EntryBatch, entryV2)
}

func decodeRestoreBinary(p []byte) (*Restore, error) {
	if len(p) < restoreFixedLen {
		return nil, Errorf(CodeMalformed, "restore is %d bytes, shorter than its %d-byte header", len(p), restoreFixedLen)
	}
	const k, s = ed25519.PublicKeySize, ed25519.SignatureSize
	n := uint64(binary.BigEndian.Uint32(p[k+8+s : restoreFixedLen]))
	if rest := uint64(len(p) - restoreFixedLen); n > rest {
		return nil, Errorf(CodeMalformed, "restore request URI length is %d but only %d bytes follow", n, rest)
	}
	buf := make([]byte, len(p))
	copy(buf, p)
	return &Restore{
		Admin:      ed25519.PublicKey(buf[0:k:k]),
		Time:       int64(binary.BigEndian.Uint64(buf[k : k+8])),
		Sig:        buf[k+8 : k+8+s : k+8+s],
		RequestURI: string(buf[restoreFixedLen : restoreFixedLen+int(n)]),
		Snapshot:   buf[restoreFixedLen+int(n):],
	}, nil
}
