// Command viper loads a CPE configuration with configs/viperconf.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/mpsa-vpn/mpsa/configs/viperconf"
)

func main() {
	viperconf.AddCPEFlags(pflag.CommandLine)
	pflag.Parse()
	c, w, err := viperconf.LoadCPE(viperconf.Options{File: os.Args[1], Flags: pflag.CommandLine})
	fmt.Println(c, w, err)
}
