// Command auth links what the CPE needs for IKE authentication anyway
// (ike/auth, crypto/x509, log/slog), to separate the configs package's own
// cost from the libraries it shares with IKE.
package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/mpsa-vpn/mpsa/ike/auth"
)

func main() {
	id, err := auth.ParseID(os.Args[0])
	c, _ := x509.ParseCertificate([]byte(os.Args[1]))
	k, _ := auth.ParsePrivateKey([]byte(os.Args[1]))
	slog.Info("probe", "id", id, "err", err, "cert", c != nil, "key", k != nil)
	fmt.Println(id)
}
