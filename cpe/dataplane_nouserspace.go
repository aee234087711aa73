//go:build mpsa_omit_userspace

package cpe

func newUserspace(DataplaneEnv) (*Dataplane, error) { return nil, errNoBackend }
