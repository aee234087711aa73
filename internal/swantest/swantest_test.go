package swantest

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"
)

// listSAsOut is what `swanctl --list-sas --raw` printed for an IKE SA with
// one CHILD_SA (charon 5.9.8, kernel-libipsec).
const listSAsOut = `list-sa event {rw {uniqueid=1 version=2 state=ESTABLISHED local-host=192.0.2.1 local-port=4500 local-id=hub.example.net remote-host=192.0.2.2 remote-port=4500 remote-id=cpe1.example.net initiator-spi=33a3e39277c8d58b responder-spi=4659f7289f7ed5a5 nat-fake=yes nat-any=yes encr-alg=AES_CBC encr-keysize=256 integ-alg=HMAC_SHA2_256_128 prf-alg=PRF_HMAC_SHA2_256 dh-group=CURVE_25519 established=0 remote-vips=[10.99.100.1] child-sas {net-1 {name=net uniqueid=1 reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP encap=yes spi-in=5b975061 spi-out=af844ae4 encr-alg=AES_GCM_16 encr-keysize=256 bytes-in=0 packets-in=0 bytes-out=0 packets-out=0 install-time=0 local-ts=[10.99.1.0/24 10.99.3.0/24] remote-ts=[10.99.100.1/32]}}}}
list-sas reply {}
`

func TestParseListSAs(t *testing.T) {
	sas := ParseListSAs(listSAsOut)
	if len(sas) != 1 {
		t.Fatalf("%d SAs: %+v", len(sas), sas)
	}
	sa := sas[0]
	if sa.Name != "rw" || sa.Attrs["state"] != "ESTABLISHED" || sa.Attrs["initiator-spi"] != "33a3e39277c8d58b" ||
		sa.Attrs["nat-fake"] != "yes" || sa.Attrs["remote-vips"] != "[10.99.100.1]" || sa.Attrs["nat-remote"] != "" {
		t.Fatalf("IKE SA %+v", sa.Attrs)
	}
	want := map[string]string{"spi-in": "5b975061", "spi-out": "af844ae4", "encap": "yes", "state": "INSTALLED",
		"local-ts": "[10.99.1.0/24 10.99.3.0/24]", "remote-ts": "[10.99.100.1/32]"}
	if len(sa.Children) != 1 {
		t.Fatalf("CHILD_SAs %+v", sa.Children)
	}
	for k, v := range want {
		if sa.Children[0][k] != v {
			t.Errorf("CHILD_SA %s = %q, want %q", k, sa.Children[0][k], v)
		}
	}
	if got := ParseListSAs("list-sas reply {}\n"); len(got) != 0 {
		t.Fatalf("no SA: %+v", got)
	}
}

// pcapFile builds a little-endian Ethernet pcap file of frames.
func pcapFile(frames ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 1)
	for _, f := range frames {
		b = append(b, make([]byte, 8)...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// udpFrame builds an Ethernet/IPv4/UDP frame (checksums left zero).
func udpFrame(src, dst netip.AddrPort, payload []byte) []byte {
	f := make([]byte, 14, 14+28+len(payload)+4)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(28+len(payload)))
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	udp := binary.BigEndian.AppendUint16(nil, src.Port())
	udp = binary.BigEndian.AppendUint16(udp, dst.Port())
	udp = binary.BigEndian.AppendUint16(udp, uint16(8+len(payload)))
	udp = append(udp, 0, 0)
	f = append(append(append(f, ip...), udp...), payload...)
	return append(f, 0, 0, 0, 0) // Ethernet padding beyond the IP length
}

func TestParsePcap(t *testing.T) {
	a, b := netip.MustParseAddrPort("192.0.2.2:500"), netip.MustParseAddrPort("192.0.2.1:4500")
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	got, err := parsePcap(bytes.NewReader(pcapFile(udpFrame(a, b, []byte("first")), arp, udpFrame(b, a, []byte("second")))))
	if err != nil {
		t.Fatal(err)
	}
	want := []Datagram{{Src: a, Dst: b, Payload: []byte("first")}, {Src: b, Dst: a, Payload: []byte("second")}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	whole := pcapFile(udpFrame(a, b, []byte("x")))
	if _, err := parsePcap(bytes.NewReader(whole[:len(whole)-3])); err == nil {
		t.Fatal("truncated file accepted")
	}
	if _, err := parsePcap(bytes.NewReader([]byte("not a pcap"))); err == nil {
		t.Fatal("garbage accepted")
	}
	huge := pcapFile(udpFrame(a, b, []byte("x")))
	binary.LittleEndian.PutUint32(huge[24+8:], maxRecord+1)
	if _, err := parsePcap(bytes.NewReader(huge)); err == nil {
		t.Fatal("record over the snap length accepted")
	}
	// A stream hands each datagram over as its record arrives.
	var n int
	stream := pcapFile(udpFrame(a, b, []byte("first")), udpFrame(b, a, []byte("second")))
	if err := readPcap(bytes.NewReader(stream), func(Datagram) { n++ }); err != nil || n != 2 {
		t.Fatalf("stream: %d datagrams, %v", n, err)
	}
}

// FuzzParseListSAs: swanctl's output never makes the parser panic.
func FuzzParseListSAs(f *testing.F) {
	f.Add(listSAsOut)
	f.Add("list-sa event {a {b {c {d {e=f}}}}}}}}")
	f.Add("list-sa event {}}}}{{{[")
	f.Fuzz(func(t *testing.T, s string) { ParseListSAs(s) })
}

// FuzzParsePcap: a capture file never makes the reader panic, and every
// datagram it returns lies inside the file.
func FuzzParsePcap(f *testing.F) {
	a, b := netip.MustParseAddrPort("192.0.2.2:500"), netip.MustParseAddrPort("192.0.2.1:4500")
	f.Add(pcapFile(udpFrame(a, b, []byte("first")), udpFrame(b, a, nil)))
	f.Add(pcapFile([]byte{1, 2, 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, _ := parsePcap(bytes.NewReader(data))
		for _, d := range ds {
			if len(d.Payload) > len(data) {
				t.Fatalf("payload of %d octets from %d", len(d.Payload), len(data))
			}
		}
	})
}
