package firmware

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"
)

// File is one member of a package, with its path inside the archive
// ("./usr/sbin/mpsa-cpe"), mode and content.
type File struct {
	Name string
	Mode int64
	Data []byte
}

// tarGz writes files (and the directories leading to them) as a gzip'd tar
// whose bytes depend only on the files and mtime: sorted names, root
// ownership, no gzip name or time.
func tarGz(files []File, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	var entries []File
	for _, f := range files {
		if !strings.HasPrefix(f.Name, "./") {
			return nil, fmt.Errorf("firmware: member %q must start with ./", f.Name)
		}
		for d := path.Dir(f.Name); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			entries = append(entries, File{Name: d + "/", Mode: 0o755})
		}
		entries = append(entries, f)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.Name,
			Mode:    e.Mode,
			ModTime: mtime,
			Uname:   "root",
			Gname:   "root",
			Format:  tar.FormatGNU,
		}
		if strings.HasSuffix(e.Name, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// arArchive writes members in the given order in the common ar format that
// opkg and dpkg read ("!<arch>\n", 60-octet headers, even alignment).
func arArchive(w io.Writer, members []File, mtime time.Time) error {
	if _, err := io.WriteString(w, "!<arch>\n"); err != nil {
		return err
	}
	for _, m := range members {
		if len(m.Name) > 16 {
			return fmt.Errorf("firmware: ar member name %q longer than 16 octets", m.Name)
		}
		hdr := fmt.Sprintf("%-16s%-12d%-6d%-6d%-8o%-10d`\n", m.Name, mtime.Unix(), 0, 0, m.Mode, len(m.Data))
		if len(hdr) != 60 {
			return fmt.Errorf("firmware: ar header for %q is %d octets", m.Name, len(hdr))
		}
		if _, err := io.WriteString(w, hdr); err != nil {
			return err
		}
		if _, err := w.Write(m.Data); err != nil {
			return err
		}
		if len(m.Data)%2 == 1 {
			if _, err := w.Write([]byte{'\n'}); err != nil {
				return err
			}
		}
	}
	return nil
}
