package bftlog

import "fmt"

// Defaults for Config.
const (
	DefaultMaxContentSize       = 64 << 10 // 64 KiB
	DefaultMaxMessagesPerAuthor = 1 << 16
	DefaultMaxAuthors           = 256
)

// Config bounds what a Store keeps. A Byzantine author can make a replica
// store at most MaxMessagesPerAuthor messages of at most MaxContentSize
// bytes each, plus one invalid-message proof.
type Config struct {
	// MaxContentSize is the largest message content, in bytes, the store
	// accepts (1 to HardMaxContent). Larger messages get ErrTooLarge.
	MaxContentSize int
	// MaxMessagesPerAuthor is the number of valid messages the store keeps
	// per author (at least 1). Further messages get ErrAuthorFull.
	MaxMessagesPerAuthor int
	// MaxAuthors is the number of distinct authors the store tracks (at
	// least 1), counting authors known only through an invalid-message
	// proof. Messages of further authors get ErrTooManyAuthors.
	MaxAuthors int
}

// DefaultConfig returns the default bounds.
func DefaultConfig() Config {
	return Config{
		MaxContentSize:       DefaultMaxContentSize,
		MaxMessagesPerAuthor: DefaultMaxMessagesPerAuthor,
		MaxAuthors:           DefaultMaxAuthors,
	}
}

// Validate checks every field; the error names the field, its value and the
// allowed range.
func (c Config) Validate() error {
	if c.MaxContentSize < 1 || c.MaxContentSize > HardMaxContent {
		return fmt.Errorf("%w: MaxContentSize is %d, must be between 1 and %d bytes", ErrInvalidConfig, c.MaxContentSize, HardMaxContent)
	}
	if c.MaxMessagesPerAuthor < 1 {
		return fmt.Errorf("%w: MaxMessagesPerAuthor is %d, must be at least 1", ErrInvalidConfig, c.MaxMessagesPerAuthor)
	}
	if c.MaxAuthors < 1 {
		return fmt.Errorf("%w: MaxAuthors is %d, must be at least 1", ErrInvalidConfig, c.MaxAuthors)
	}
	return nil
}
