package memory_test

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/memory"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/transform"
)

// A daemon under test programs the backend from its own goroutine; the test
// waits for the state it expects instead of sleeping.
func ExampleBackend_Wait() {
	b := memory.New()
	defer b.Close()

	suite := transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128}
	go func() { // the daemon installs the group SA after ROLL1
		keys := esp.Keys{SPI: 0x1002, Suite: suite, EncKey: bytes.Repeat([]byte{7}, 16), IntegKey: bytes.Repeat([]byte{8}, 32)}
		b.Set(&dataplane.State{SAs: []dataplane.SA{{Keys: keys, Dir: dataplane.Both, Tunnel: 1}}})
		keys.Wipe() // the backend kept its own copy
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := b.Wait(ctx, func(s memory.Snapshot) bool {
		sa, ok := s.Outbound(1)
		return ok && sa.Keys.SPI == 0x1002
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer snap.Wipe()
	fmt.Print(snap.Text())
	// Output:
	// sa 00001002 both tunnel 1 AES_CBC_128/HMAC_SHA2_256_128 replay 0
}
