// Package firmware builds what a carrier ships to CPE routers: mpsa-cpe
// cross-compiled for OpenWrt-class targets (MIPS and ARM boards with 16 MB of
// flash), an OpenWrt package (.ipk) per architecture, a plain tarball for
// other Linux targets, and a checksum manifest.
//
// The entry point is `make firmware` (`go run ./firmware/mkfirmware`), which
// calls Release. Builds are reproducible: the same commit gives
// byte-identical binaries and packages. Binaries are built with CGO
// disabled, trimmed paths and stripped symbols, and with inlining off in
// the packages that never see a packet (ColdPackages); package members
// carry the commit's time as their modification time, root ownership and a
// fixed order; gzip streams carry no name or time.
//
// Size: issue 7 asks for at most 6 MiB (SizeBudget). It is not met (9.0 MiB
// on mipsle, 7.6–8.3 MiB elsewhere); docs/BENCHMARKS.md, "firmware", says
// where the megabytes go and what was done. Every build fails when a binary
// exceeds its target's ceiling (Target.MaxSize), set just above the size
// reached, so that growth is a decision and not a drift. FeatureTags leave
// optional features out for boards that cannot use them.
//
// The tests build every target through mkfirmware and check sizes, ELF
// headers, the packages (unpacked with ar and tar), the binaries under
// qemu-user (version stamp, -test of the installed example config) and
// reproducibility (a second build, and a build from an empty GOCACHE);
// TestHotPathUnchanged checks that ColdPackages leave the packet path's
// code as it is. cmd/mpsa-cpe's dependency test covers every Target and
// feature tag.
package firmware
