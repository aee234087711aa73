// Package store keeps the hub's MPSA key server state (mpsa.Store) in a
// bbolt file: each group's record under its name in bucket "groups", each
// provisioned CPE's group under the CPE's name in bucket "members".
//
// It is a package of its own so that only the hub links bbolt: the CPE
// imports mpsa for the member side and must not carry the hub's database
// (firmware/ size budget, issue 7).
//
// The file is created, and kept, with mode 0600: records hold key material.
// bbolt frees the pages of deleted records but does not overwrite them at
// once; keep the file on storage you trust.
package store

import (
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"

	"github.com/mpsa-vpn/mpsa/mpsa"
)

// FileMode is the permission of the store file.
const FileMode os.FileMode = 0o600

// lockTimeout is how long Open waits for another process to release the file.
const lockTimeout = time.Second

var (
	bucketGroups  = []byte("groups")
	bucketMembers = []byte("members")
)

// Store is an open store file. It implements mpsa.Store; its methods are
// safe for concurrent use.
type Store struct {
	db *bbolt.DB
}

var _ mpsa.Store = (*Store)(nil)

// Open opens or creates the store at path. An existing file gets its
// permissions reset to 0600. It fails after a second if another process
// holds the file.
func Open(path string) (*Store, error) {
	db, err := bbolt.Open(path, FileMode, &bbolt.Options{Timeout: lockTimeout})
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	if err := os.Chmod(path, FileMode); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketGroups, bucketMembers} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path returns the file's path.
func (s *Store) Path() string { return s.db.Path() }

// LoadGroup returns a copy of the record stored under name (the caller owns
// and wipes it), or nil when there is none.
func (s *Store) LoadGroup(name string) ([]byte, error) {
	var v []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketGroups).Get([]byte(name)); b != nil {
			v = append(make([]byte, 0, len(b)), b...) // out of the mapped file
		}
		return nil
	})
	return v, err
}

// SaveGroup stores record under name, replacing what was there. The record
// is not retained.
func (s *Store) SaveGroup(name string, record []byte) error {
	if name == "" {
		return errors.New("store: empty group name")
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketGroups).Put([]byte(name), record)
	})
}

// DeleteGroup removes the record stored under name, if any.
func (s *Store) DeleteGroup(name string) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketGroups).Delete([]byte(name))
	})
}

// LoadMembers returns the provisioning: CPE name → group name. Entries with
// names longer than mpsa allows are refused as damage.
func (s *Store) LoadMembers() (map[string]string, error) {
	m := make(map[string]string)
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			if len(k) == 0 || len(k) > mpsa.MaxCPENameLen || len(v) == 0 || len(v) > mpsa.MaxGroupNameLen {
				return errors.New("store: malformed member record")
			}
			m[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// UpdateMembers provisions set (CPE name → group name) and removes del, in
// one transaction.
func (s *Store) UpdateMembers(set map[string]string, del []string) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketMembers)
		for _, name := range del {
			if err := b.Delete([]byte(name)); err != nil {
				return err
			}
		}
		for name, g := range set {
			if err := b.Put([]byte(name), []byte(g)); err != nil {
				return err
			}
		}
		return nil
	})
}
