//go:build mpsa_omit_xfrm

package cpe

func probeXFRM(string) error                   { return errNoBackend }
func newXFRM(DataplaneEnv) (*Dataplane, error) { return nil, errNoBackend }
