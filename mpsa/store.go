package mpsa

import (
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"
)

// Store keeps the hub's group state across restarts in a bbolt file: each
// group's live epochs (SPI, suite, Nonce, SK_d, absolute times, Sender-ID
// reservations) and which CPE is provisioned in which group. The file is
// created, and kept, with mode 0600; it holds key material.
//
// Only a KeyServer uses a Store; one Store serves one KeyServer.
type Store struct {
	db *bbolt.DB
}

var (
	bucketGroups  = []byte("groups")
	bucketMembers = []byte("members")
)

// StoreFileMode is the permission of the store file.
const StoreFileMode os.FileMode = 0o600

// OpenStore opens or creates the store at path. An existing file gets its
// permissions reset to 0600. It fails after a second if another process
// holds the file.
func OpenStore(path string) (*Store, error) {
	db, err := bbolt.Open(path, StoreFileMode, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("mpsa: opening store %s: %w", path, err)
	}
	if err := os.Chmod(path, StoreFileMode); err != nil {
		db.Close()
		return nil, fmt.Errorf("mpsa: store %s: %w", path, err)
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
		return nil, fmt.Errorf("mpsa: store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path returns the file's path.
func (s *Store) Path() string { return s.db.Path() }

// loadGroup returns the stored record of a group, or nil when there is none.
// The record owns its key material (copied out of the mapped file).
func (s *Store) loadGroup(name string) (*groupRecord, error) {
	var rec *groupRecord
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketGroups).Get([]byte(name))
		if v == nil {
			return nil
		}
		var err error
		rec, err = decodeGroupRecord(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mpsa: store: group %s: %w", name, err)
	}
	if rec != nil && rec.name != name {
		rec.wipe()
		return nil, fmt.Errorf("mpsa: store: record under %q names group %q", name, rec.name)
	}
	return rec, nil
}

// saveGroup writes rec, replacing what was stored under its name.
func (s *Store) saveGroup(rec *groupRecord) error {
	v, err := rec.encode()
	if err != nil {
		return err
	}
	defer clear(v)
	err = s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketGroups).Put([]byte(rec.name), v)
	})
	if err != nil {
		return fmt.Errorf("mpsa: store: saving group %s: %w", rec.name, err)
	}
	return nil
}

func (s *Store) deleteGroup(name string) error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketGroups).Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("mpsa: store: deleting group %s: %w", name, err)
	}
	return nil
}

// loadMembers returns the provisioning: CPE name → group name.
func (s *Store) loadMembers() (map[string]string, error) {
	m := make(map[string]string)
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			if len(k) == 0 || len(k) > MaxCPENameLen || len(v) == 0 || len(v) > MaxGroupNameLen {
				return errors.New("malformed member record")
			}
			m[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("mpsa: store: members: %w", err)
	}
	return m, nil
}

// updateMembers provisions set (CPE → group) and removes del, in one
// transaction.
func (s *Store) updateMembers(set map[string]string, del []string) error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
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
	if err != nil {
		return fmt.Errorf("mpsa: store: members: %w", err)
	}
	return nil
}
