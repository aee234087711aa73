package mpsa

import (
	"errors"
	"fmt"
)

// Store keeps a KeyServer's state across restarts: each group's record (its
// live epochs with SPI, suite, Nonce, SK_d, absolute times and Sender-ID
// reservations, encoded and checked by the key server) and which CPE is
// provisioned in which group. Package mpsa/store implements it with a bbolt
// file; the hub uses that, and nothing on a CPE links it.
//
// Records hold key material: an implementation keeps them in a file only
// the daemon can read (mode 0600), returns copies it does not retain (the
// key server wipes them after decoding), and does not keep the slices
// passed to SaveGroup after it returns (the key server wipes them too).
// Only one KeyServer uses a Store.
type Store interface {
	// LoadGroup returns the record stored under name, or nil and no error
	// when there is none.
	LoadGroup(name string) ([]byte, error)
	// SaveGroup stores record under name, replacing what was there.
	SaveGroup(name string, record []byte) error
	// DeleteGroup removes the record stored under name, if any.
	DeleteGroup(name string) error
	// LoadMembers returns the provisioning: CPE name → group name.
	LoadMembers() (map[string]string, error)
	// UpdateMembers provisions set (CPE name → group name) and removes del,
	// atomically.
	UpdateMembers(set map[string]string, del []string) error
}

// records is the key server's view of its Store: group records as values.
type records struct{ s Store }

// loadGroup returns the stored record of a group, or nil when there is none.
// The record owns its key material.
func (r records) loadGroup(name string) (*groupRecord, error) {
	v, err := r.s.LoadGroup(name)
	if err != nil {
		return nil, fmt.Errorf("mpsa: store: group %s: %w", name, err)
	}
	if v == nil {
		return nil, nil
	}
	defer clear(v)
	rec, err := decodeGroupRecord(v)
	if err != nil {
		return nil, fmt.Errorf("mpsa: store: group %s: %w", name, err)
	}
	if rec.name != name {
		rec.wipe()
		return nil, fmt.Errorf("mpsa: store: record under %q names group %q", name, rec.name)
	}
	return rec, nil
}

// saveGroup writes rec, replacing what was stored under its name.
func (r records) saveGroup(rec *groupRecord) error {
	v, err := rec.encode()
	if err != nil {
		return err
	}
	defer clear(v)
	if err := r.s.SaveGroup(rec.name, v); err != nil {
		return fmt.Errorf("mpsa: store: saving group %s: %w", rec.name, err)
	}
	return nil
}

func (r records) deleteGroup(name string) error {
	if err := r.s.DeleteGroup(name); err != nil {
		return fmt.Errorf("mpsa: store: deleting group %s: %w", name, err)
	}
	return nil
}

// loadMembers returns the provisioning: CPE name → group name, checked
// against the bounds the key server applies to names.
func (r records) loadMembers() (map[string]string, error) {
	m, err := r.s.LoadMembers()
	if err != nil {
		return nil, fmt.Errorf("mpsa: store: members: %w", err)
	}
	for k, v := range m {
		if len(k) == 0 || len(k) > MaxCPENameLen || len(v) == 0 || len(v) > MaxGroupNameLen {
			return nil, errors.New("mpsa: store: members: malformed member record")
		}
	}
	return m, nil
}

// updateMembers provisions set (CPE → group) and removes del, in one
// transaction.
func (r records) updateMembers(set map[string]string, del []string) error {
	if err := r.s.UpdateMembers(set, del); err != nil {
		return fmt.Errorf("mpsa: store: members: %w", err)
	}
	return nil
}
