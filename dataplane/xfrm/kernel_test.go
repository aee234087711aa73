package xfrm

import "os"

// VMEnv is set (to 1) by the VM harness (tests/vm) inside its guest, whose
// kernel has ESP.
const VMEnv = "MPSA_VM"

func inVM() bool { return os.Getenv(VMEnv) == "1" }
