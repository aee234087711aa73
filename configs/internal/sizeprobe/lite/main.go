// Command lite loads a CPE configuration with configs/liteconf.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/mpsa-vpn/mpsa/configs/liteconf"
)

func main() {
	liteconf.AddCPEFlags(flag.CommandLine)
	flag.Parse()
	c, w, err := liteconf.LoadCPE(liteconf.Options{File: os.Args[1], Flags: flag.CommandLine})
	fmt.Println(c, w, err)
}
