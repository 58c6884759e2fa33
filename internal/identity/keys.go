package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/tandem-consensus/tandem/smr"
)

// NodeKeyFileName is the name of a node's Ed25519 signing key inside its
// data directory (data_dir/node.key), as written by `tandem init`.
const NodeKeyFileName = "node.key"

// pemPrivateKey is the PEM block type of PKCS#8 private keys.
const pemPrivateKey = "PRIVATE KEY"

// ErrFileExists is returned (wrapped, with the path) by every function of
// this package that writes a file when that file already exists. Nothing is
// written in that case.
var ErrFileExists = errors.New("file already exists")

// ErrInsecureKeyFile is returned (wrapped, with the path, the mode and the
// fix) when a private key file can be read by group or others.
var ErrInsecureKeyFile = errors.New("private key file is readable by group or others")

// GenerateKey returns a new Ed25519 private key from crypto/rand.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return priv, nil
}

// WriteKeyFile writes k to path as a PEM "PRIVATE KEY" (PKCS#8) block with
// mode 0600, creating the parent directory with mode 0700 if needed. It
// refuses to replace an existing file (ErrFileExists).
func WriteKeyFile(path string, k ed25519.PrivateKey) error {
	if len(k) != ed25519.PrivateKeySize {
		return fmt.Errorf("write key file %s: ed25519 private key has %d bytes, want %d", path, len(k), ed25519.PrivateKeySize)
	}
	keyPEM, err := encodePrivateKeyPEM(k)
	if err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return writeNewFile(path, keyPEM)
}

// LoadKeyFile reads an Ed25519 private key written by WriteKeyFile (or any
// PEM PKCS#8 Ed25519 key). It fails with a message naming the file when the
// file is missing, is not PEM, holds another key type, or is readable by
// group or others (ErrInsecureKeyFile).
func LoadKeyFile(path string) (ed25519.PrivateKey, error) {
	signer, err := loadPrivateKey(path)
	if err != nil {
		return nil, err
	}
	k, ok := signer.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key file %s: holds a %s key, want an Ed25519 key", path, keyTypeName(signer))
	}
	return k, nil
}

// EncodePublicKey returns pub in the form used in configuration
// (bootstrap_admin_keys), ACLs and the CLI. It is smr.FormatKey, the one
// implementation of that form; new code should call smr.FormatKey.
func EncodePublicKey(pub ed25519.PublicKey) string { return smr.FormatKey(pub) }

// ParsePublicKey parses a public key in the form EncodePublicKey returns.
// It is smr.ParseKey: strict, canonical lowercase hex of exactly 32
// bytes, with no surrounding white space, so every accepted string names one
// key and is the spelling ACLs use. A rejection is an *smr.Error with
// smr.CodeMalformed. New code should call smr.ParseKey.
func ParsePublicKey(s string) (ed25519.PublicKey, error) { return smr.ParseKey(s) }

// encodePrivateKeyPEM marshals k as a PEM PKCS#8 block.
func encodePrivateKeyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// loadPrivateKey reads a PEM private key file after checking its mode.
func loadPrivateKey(path string) (crypto.Signer, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	return parsePrivateKeyPEM(path, data)
}

// parsePrivateKeyPEM decodes the first PEM block of data (from file path) as
// a PKCS#8, EC or PKCS#1 private key.
func parsePrivateKeyPEM(path string, data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key file %s: not a PEM file (want a %q block)", path, pemPrivateKey)
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case pemPrivateKey:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("key file %s: PEM block is %q, want %q", path, block.Type, pemPrivateKey)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: parse %s: %w", path, block.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key file %s: %T is not a signing key", path, key)
	}
	return signer, nil
}

// readSecretFile reads a file that holds a private key, refusing it when
// group or others have any permission on it.
func readSecretFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("key file %s does not exist: %w", path, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("key file %s is a directory", path)
	}
	// Windows has no meaningful Unix permission bits.
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %#o: %w; run: chmod 600 %s",
			path, fi.Mode().Perm(), ErrInsecureKeyFile, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	return data, nil
}

// writeNewFile creates path with mode 0600 and writes data to it, creating
// the parent directory with mode 0700. It fails with ErrFileExists if path
// exists, and removes the file again if the write fails half-way.
func writeNewFile(path string, data []byte) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create directory %s: %w", dir, err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("refusing to overwrite %s: %w (move it away or choose another path)", path, ErrFileExists)
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	// The umask cannot widen 0600, but a pre-set ACL or odd umask could
	// narrow it oddly; make the mode exact.
	if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// ensureAbsent fails with ErrFileExists if any of paths exists.
func ensureAbsent(paths ...string) error {
	for _, p := range paths {
		_, err := os.Lstat(p)
		if err == nil {
			return fmt.Errorf("refusing to overwrite %s: %w (move it away or choose another path)", p, ErrFileExists)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stat %s: %w", p, err)
		}
	}
	return nil
}

// keyTypeName names the algorithm of a key for error messages.
func keyTypeName(k any) string {
	switch k.(type) {
	case ed25519.PrivateKey, ed25519.PublicKey:
		return "Ed25519"
	case *ecdsa.PrivateKey, *ecdsa.PublicKey:
		return "ECDSA"
	case *rsa.PrivateKey, *rsa.PublicKey:
		return "RSA"
	default:
		return fmt.Sprintf("%T", k)
	}
}
