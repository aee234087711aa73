package userspace

// SetSeqForTest sets the last sequence number of the installed SA spi.
func SetSeqForTest(b *Backend, spi uint32, seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.installed {
		if e.cfg.Keys.SPI == spi {
			e.sa.SetSeq(seq)
		}
	}
}
