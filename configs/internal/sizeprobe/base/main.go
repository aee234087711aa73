// Command base is the size baseline: fmt and os only.
package main

import (
	"fmt"
	"os"
)

func main() { fmt.Println(os.Args) }
