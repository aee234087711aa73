// Command core checks a CPE configuration tree with the configs package
// alone (no file format, no Viper).
package main

import (
	"fmt"
	"os"

	"github.com/mpsa-vpn/mpsa/configs"
)

func main() {
	c, w, err := configs.BuildCPE(map[string]any{"identity": os.Args[0]}, configs.Source{})
	fmt.Println(c, w, err)
}
