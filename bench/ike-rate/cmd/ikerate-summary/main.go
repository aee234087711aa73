// Command ikerate-summary prints the medians of two labels of a results
// file written by strongswan-loadtest.sh and their ratios: responder CPU
// per established SA and setups per second of the subject (our responder)
// against the anchor (charon) measured in the same run.
//
//	ikerate-summary -anchor "charon-fake aes128-sha256-x25519" -subject "mpsa aes128-sha256-x25519" -last 3 results.tsv
package main

import (
	"flag"
	"fmt"
	"os"

	ikerate "github.com/mpsa-vpn/mpsa/bench/ike-rate"
)

func main() {
	anchor := flag.String("anchor", "", "label of the anchor's runs")
	subject := flag.String("subject", "", "label of the subject's runs")
	last := flag.Int("last", 0, "use only the last N runs of each label (0: all)")
	flag.Parse()
	if flag.NArg() != 1 || *anchor == "" || *subject == "" {
		fmt.Fprintln(os.Stderr, "usage: ikerate-summary -anchor LABEL -subject LABEL [-last N] results.tsv")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *anchor, *subject, *last); err != nil {
		fmt.Fprintln(os.Stderr, "ikerate-summary:", err)
		os.Exit(1)
	}
}

func run(path, anchor, subject string, last int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rs, err := ikerate.ReadResults(f)
	if err != nil {
		return err
	}
	a, err := ikerate.Summarize(rs, anchor, last)
	if err != nil {
		return err
	}
	s, err := ikerate.Summarize(rs, subject, last)
	if err != nil {
		return err
	}
	_, err = ikerate.Compare(a, s).WriteTo(os.Stdout)
	return err
}
