// Package sizeprobe holds five minimal programs that load a CPE
// configuration in different ways, so BenchmarkCPEBinarySize can measure
// what each way adds to a stripped binary: base (fmt and os only), auth
// (what IKE authentication links anyway: ike/auth, x509, slog), core
// (configs, from a tree built in code), lite (configs/liteconf) and viper
// (configs/viperconf).
package sizeprobe
