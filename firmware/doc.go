// Package firmware builds what a carrier ships to CPE routers: mpsa-cpe
// cross-compiled for OpenWrt-class targets (MIPS and ARM boards with 16 MB of
// flash), an OpenWrt package (.ipk) per architecture, a plain tarball for
// other Linux targets, and a checksum manifest.
//
// Builds are reproducible: the same commit gives byte-identical binaries and
// packages. Binaries are built with CGO disabled, trimmed paths and stripped
// symbols; package members carry the commit's time as their modification
// time, root ownership and a fixed order; gzip streams carry no name or time.
//
// Every binary must fit the size budget (SizeBudget). The entry point is
// `make firmware` (or `go run ./firmware/mkfirmware`).
package firmware
