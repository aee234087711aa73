package xfrm

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"

	"github.com/mpsa-vpn/mpsa/esp"
)

// Drop reasons the backend reports, named as package esp names them.
var (
	DropReplay = esp.DropReplay.String()
	DropBadICV = esp.DropBadICV.String()
)

// xfrmStatDrops maps the kernel's XFRM MIB counters (Documentation/
// networking/xfrm_proc.rst) onto the data plane's drop reasons. Counters
// not named here are summed under "other".
var xfrmStatDrops = map[string]string{
	"XfrmInNoStates":        esp.DropUnknownSPI.String(),
	"XfrmInStateProtoError": esp.DropBadICV.String(),
	"XfrmInStateSeqError":   esp.DropReplay.String(),
	"XfrmInTmplMismatch":    esp.DropSelector.String(),
	"XfrmInStateMismatch":   esp.DropSelector.String(),
	"XfrmInNoPols":          esp.DropSelector.String(),
	"XfrmInPolBlock":        esp.DropSelector.String(),
	"XfrmInHdrError":        esp.DropMalformed.String(),
	"XfrmInError":           esp.DropMalformed.String(),
	"XfrmInStateModeError":  esp.DropMalformed.String(),
	"XfrmFwdHdrError":       esp.DropMalformed.String(),
	"XfrmOutNoStates":       esp.DropNoSA.String(),
	"XfrmOutPolBlock":       esp.DropNoSA.String(),
	"XfrmOutStateSeqError":  esp.DropSeqExhausted.String(),
	"XfrmInBufferError":     esp.DropOverload.String(),
	"XfrmOutNoQueueSpace":   esp.DropOverload.String(),
}

// maxXfrmStat bounds what is read from xfrm_stat (about 1 KiB today).
const maxXfrmStat = 16 << 10

// readXfrmStat adds the counters of an open xfrm_stat file into drops.
func readXfrmStat(f io.ReaderAt, drops map[string]uint64) error {
	buf := make([]byte, maxXfrmStat)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return err
	}
	return parseXfrmStat(buf[:n], drops)
}

// parseXfrmStat parses "Name <spaces> value" lines.
func parseXfrmStat(b []byte, drops map[string]uint64) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, val, ok := bytes.Cut(bytes.TrimSpace(sc.Bytes()), []byte{'\t'})
		if !ok {
			name, val, ok = bytes.Cut(bytes.TrimSpace(sc.Bytes()), []byte{' '})
		}
		if !ok {
			return fmt.Errorf("xfrm: xfrm_stat line %q", sc.Bytes())
		}
		v, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 10, 64)
		if err != nil {
			return fmt.Errorf("xfrm: xfrm_stat %s: %w", bytes.TrimSpace(name), err)
		}
		if v == 0 {
			continue
		}
		reason, known := xfrmStatDrops[string(bytes.TrimSpace(name))]
		if !known {
			reason = "other"
		}
		drops[reason] += v
	}
	return sc.Err()
}
