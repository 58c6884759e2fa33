// Package fsutil writes files durably: the stores of Tandem (evidence,
// quarantine list, checkpoints, the epoch record, a dataset replica) replace
// their files with WriteFile so that a crash leaves the old or the new
// content, never a torn one.
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// TempSuffix is appended to a file's path for the temporary file WriteFile
// writes first; a store may remove leftovers with this suffix when it
// opens.
const TempSuffix = ".tmp"

// WriteFile replaces path with data durably: it writes path+TempSuffix
// (mode 0600; the directory must exist), fsyncs it, renames it over
// path and fsyncs the directory. On failure the temporary file is removed
// and path is unchanged.
func WriteFile(path string, data []byte) error {
	tmp := path + TempSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs directory dir, making renames and removals in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
