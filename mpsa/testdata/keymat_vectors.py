#!/usr/bin/env python3
"""Known-answer vectors for MPSA key derivation, computed independently of the Go code.

KEYMAT = prf+(SK_d, Nonce) (draft-yamaya-ipsecme-mpsa-04 §3.3.2, RFC 7296 §2.13/§2.17),
implemented here with Python's own hmac/hashlib. The encryption key (with the 4-octet salt
for AEAD) is taken first, then the integrity key.

Regenerate with:  python3 mpsa/testdata/keymat_vectors.py > mpsa/testdata/keymat_vectors.txt
TestKeymatVectorsFile checks the committed file matches this script's output.

Output: one vector a line, space-separated fields:
  name prf encr keybits integ spi skd nonce enckey integkey   ("-" for an empty integkey)
where prf/encr/integ are IANA transform IDs and binary values are lowercase hex.
"""
import hashlib
import hmac

PRF = {2: (hashlib.sha1, 20), 5: (hashlib.sha256, 32), 6: (hashlib.sha384, 48), 7: (hashlib.sha512, 64)}
# encr id -> function(keybits) -> encryption key octets taken from KEYMAT (salt included)
ENCR = {12: lambda b: b // 8, 20: lambda b: b // 8 + 4, 28: lambda b: 36}
INTEG = {0: 0, 2: 20, 12: 32, 13: 48, 14: 64}


def prf_plus(h, key, seed, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(key, t + seed + bytes([i]), h).digest()
        out += t
        i += 1
    return out[:n]


def pattern(n, start, step):
    return bytes((start + i * step) % 256 for i in range(n))


VECTORS = [
    # name, prf, encr, keybits, integ, spi, nonce length
    ("draft-example-aes256cbc-sha1", 2, 12, 256, 2, 0x1000_0001, 32),
    ("default-aes256cbc-sha256", 5, 12, 256, 12, 0xC0FFEE01, 32),
    ("aes128cbc-sha512-nonce256", 7, 12, 128, 14, 0x0000_0100, 256),
    ("aes256cbc-sha384-prfsha1-nonce16", 2, 12, 256, 13, 0xFFFF_FFFF, 16),
    ("aes256gcm-prfsha256", 5, 20, 256, 0, 0xDEADBEEF, 32),
    ("aes128gcm-prfsha384", 6, 20, 128, 0, 0x0BADCAFE, 48),
    ("chacha20poly1305-prfsha512", 7, 28, 0, 0, 0x7FFF_FFFF, 64),
]

for name, prf, encr, keybits, integ, spi, nlen in VECTORS:
    h, klen = PRF[prf]
    skd = pattern(klen, 0x01, 7)
    nonce = pattern(nlen, 0xA0, 3)
    el, il = ENCR[encr](keybits), INTEG[integ]
    km = prf_plus(h, skd, nonce, el + il)
    ik = km[el:].hex() or "-"
    print(name, prf, encr, keybits, integ, "%08x" % spi, skd.hex(), nonce.hex(), km[:el].hex(), ik)
